// Bureau's Dashboard: a page of plain JavaScript that reads the REST API (/v1). No framework, no build step.
// Every text that comes from the API (run input, model output, tool arguments, errors) goes into the page
// as a text node (el() below): never as HTML.
'use strict';

(() => {
  const KEY = 'bureau.apiKey';
  const main = document.getElementById('main');
  const statusLine = document.getElementById('status');
  let page = null; // the AbortController of the page on screen: its requests and streams end when it goes
  // The API is beside the Dashboard's mount path (the host's path base, if any, comes before both).
  const mount = document.querySelector('meta[name="bureau-mount"]').content;
  const here = location.pathname;
  const API = (here.endsWith(mount) ? here.slice(0, here.length - mount.length) : '') + '/v1';

  // ---- DOM ----------------------------------------------------------------------------------------
  /** Makes an element: attrs are attributes (on* keys are listeners), children are nodes or strings (as text). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'value') e.value = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    append(e, children);
    return e;
  }
  function append(parent, children) {
    for (const c of [children].flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      parent.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return parent;
  }
  function replace(parent, ...children) { parent.replaceChildren(); return append(parent, children); }
  function say(text) { statusLine.textContent = text; }

  // ---- API ----------------------------------------------------------------------------------------
  function key() { return sessionStorage.getItem(KEY) || ''; }
  function headers(extra) {
    const h = Object.assign({ Accept: 'application/json' }, extra || {});
    if (key()) h.Authorization = 'Bearer ' + key();
    return h;
  }
  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }
  function apiError(status, detail) {
    return new ApiError(status, status === 401 ? detail + ' (enter an API key above)' : detail);
  }
  async function api(path, opts) {
    opts = opts || {};
    const init = { method: opts.method || 'GET', headers: headers(opts.body ? { 'Content-Type': 'application/json' } : null), signal: opts.signal || (page && page.signal) };
    if (opts.body) init.body = JSON.stringify(opts.body);
    const res = await fetch(API + path, init);
    const text = await res.text();
    let doc = null;
    try { doc = text ? JSON.parse(text) : null; } catch { doc = null; }
    if (!res.ok) {
      throw apiError(res.status, (doc && (doc.detail || doc.title)) || (res.status + ' ' + res.statusText));
    }
    return doc;
  }

  /**
   * Reads Server-Sent Events with fetch (EventSource cannot send the Authorization header), and reconnects
   * after a dropped connection, resuming after the last event id. handlers: { event(name, data, id), open(), end() }.
   */
  function stream(path, signal, handlers) {
    let lastId = null;
    let delay = 1000;
    (async () => {
      while (!signal.aborted) {
        let ended = false;
        try {
          const h = headers({ Accept: 'text/event-stream' });
          if (lastId !== null) h['Last-Event-ID'] = lastId;
          const res = await fetch(API + path, { headers: h, signal, cache: 'no-store' });
          if (!res.ok) {
            let detail = res.status + ' ' + res.statusText;
            try { detail = (await res.json()).detail || detail; } catch { /* not a problem document */ }
            throw apiError(res.status, detail);
          }
          delay = 1000;
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = '';
          let name = 'message', data = [], id = null;
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value;
            let nl;
            while ((nl = buffer.indexOf('\n')) >= 0) {
              const line = buffer.slice(0, nl).replace(/\r$/, '');
              buffer = buffer.slice(nl + 1);
              if (line === '') {
                if (data.length) {
                  if (id !== null) lastId = id;
                  if (name === 'end') ended = true;
                  try { handlers.event(name, JSON.parse(data.join('\n')), id); }
                  catch (e) { console.error('event ' + name + ' ' + (id || '') + ' of ' + path + ': ' + e); }
                }
                name = 'message'; data = []; id = null;
              } else if (line.startsWith(':')) {
                if (line.startsWith(': subscribed') && handlers.open) handlers.open();
              } else {
                const colon = line.indexOf(':');
                const field = colon < 0 ? line : line.slice(0, colon);
                const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
                if (field === 'event') name = val;
                else if (field === 'data') data.push(val);
                else if (field === 'id') id = val;
              }
            }
          }
        } catch (e) {
          if (signal.aborted) return;
          if (!(e instanceof ApiError)) console.warn('event stream ' + path + ' dropped: ' + e);
          if (e instanceof ApiError && (e.status === 401 || e.status === 403 || e.status === 404)) {
            if (handlers.error) handlers.error(e);
            return;
          }
        }
        if (ended || signal.aborted) { if (ended && handlers.end) handlers.end(); return; }
        if (handlers.lost) handlers.lost();
        await new Promise(r => setTimeout(r, delay));
        delay = Math.min(delay * 2, 15000);
      }
    })();
  }

  // ---- Formatting ---------------------------------------------------------------------------------
  function when(t) {
    if (!t) return '';
    const d = new Date(t);
    return isNaN(d) ? String(t) : d.toLocaleString();
  }
  function time(t) { return t ? el('time', { datetime: t }, when(t)) : ''; }
  function money(c) { return c ? '$' + Number(c).toFixed(c < 0.01 ? 6 : 4) : ''; }
  function tokens(u) { return u ? (u.inputTokens || 0) + ' in / ' + (u.outputTokens || 0) + ' out' : ''; }
  function short(text, n) { text = text == null ? '' : String(text); return text.length > n ? text.slice(0, n - 1) + '…' : text; }
  function badge(status) { return el('span', { class: 'badge s-' + String(status).replace(/[^a-z-]/g, '') }, status); }
  function runLink(id, text) { return el('a', { href: '#/run/' + encodeURIComponent(id) }, text || id); }
  /** JSON text (tool arguments, results) shown indented when it parses, as it is otherwise. */
  function json(value) {
    let text = value;
    if (typeof value === 'string') {
      try { text = JSON.stringify(JSON.parse(value), null, 2); } catch { text = value; }
    } else if (value !== undefined) {
      text = JSON.stringify(value, null, 2);
    }
    return el('pre', { class: 'json' }, text == null ? '' : text);
  }
  function dl(pairs) {
    const d = el('dl');
    for (const [k, v] of pairs) if (v !== null && v !== undefined && v !== '') append(d, [el('dt', null, k), el('dd', null, v)]);
    return d;
  }
  function failureSentence(f) {
    if (!f) return null;
    let s = 'Failed at step ' + (f.step ?? '?') + ': ' + f.cause + (f.kind ? ' (' + f.kind + ')' : '');
    if (f.dependency) s += ' in ' + f.dependency;
    if (f.attempts) s += ' after ' + f.attempts + ' attempt' + (f.attempts === 1 ? '' : 's');
    return s + '. ' + (f.hint || '');
  }
  function problem(e) {
    return el('p', { class: 'error', role: 'alert' }, e instanceof Error ? e.message : String(e));
  }
  function query() {
    const h = location.hash.replace(/^#/, '');
    const i = h.indexOf('?');
    return new URLSearchParams(i < 0 ? '' : h.slice(i + 1));
  }
  function heading(text, ...rest) { return el('h1', null, text, ...rest); }

  // ---- Runs ---------------------------------------------------------------------------------------
  const STATUSES = ['queued', 'running', 'waiting', 'succeeded', 'failed', 'canceled'];

  async function runsPage(signal) {
    const q = query();
    const agent = q.get('agent') || '', status = q.get('status') || '';
    const agentSelect = el('select', { id: 'f-agent', name: 'agent' }, el('option', { value: '' }, 'all agents'));
    const statusSelect = el('select', { id: 'f-status', name: 'status' }, el('option', { value: '' }, 'any status'),
      STATUSES.map(s => el('option', { value: s }, s)));
    statusSelect.value = status;
    const filters = el('form', { class: 'filters', 'aria-label': 'Filter runs', onsubmit: ev => {
      ev.preventDefault();
      const p = new URLSearchParams();
      if (agentSelect.value) p.set('agent', agentSelect.value);
      if (statusSelect.value) p.set('status', statusSelect.value);
      location.hash = '#/runs' + (p.toString() ? '?' + p : '');
    } }, el('label', { for: 'f-agent' }, 'Agent'), agentSelect, el('label', { for: 'f-status' }, 'Status'), statusSelect, el('button', { type: 'submit' }, 'Filter'));
    const live = el('span', { class: 'live', id: 'live' }, 'connecting…');
    const body = el('tbody');
    const table = el('table', { class: 'runs', id: 'runs' },
      el('caption', null, 'Runs, newest first'),
      el('thead', null, el('tr', null, ['Run', 'Agent', 'Status', 'Created', 'Input', 'Tokens', 'Cost'].map(h => el('th', { scope: 'col' }, h)))),
      body);
    replace(main, heading('Runs ', live), filters, table);

    api('/agents', { signal }).then(doc => {
      for (const a of doc.items) agentSelect.append(el('option', { value: a.name }, a.name + (a.kind === 'team' ? ' (team)' : '')));
      agentSelect.value = agent;
    }).catch(() => { /* the list below says what is wrong */ });

    const rows = new Map();
    const render = () => {
      const sorted = [...rows.values()].sort((a, b) => (Date.parse(b.createdAt) || 0) - (Date.parse(a.createdAt) || 0) || b.id.localeCompare(a.id));
      replace(body, sorted.length ? sorted.map(r => el('tr', { 'data-run': r.id, 'data-status': r.status },
        el('td', null, runLink(r.id), r.parentRunId ? el('span', { class: 'muted' }, ' child') : null),
        el('td', null, r.agent),
        el('td', null, badge(r.status)),
        el('td', null, time(r.createdAt)),
        el('td', { class: 'input' }, short(r.input, 120)),
        el('td', { class: 'num' }, tokens(r.usage)),
        el('td', { class: 'num' }, money(r.cost)))) : el('tr', null, el('td', { colspan: 7, class: 'muted' }, 'No runs yet.')));
    };
    const load = async () => {
      const p = new URLSearchParams({ limit: '50' });
      if (agent) p.set('agent', agent);
      if (status) p.set('status', status);
      try {
        const doc = await api('/runs?' + p, { signal });
        rows.clear();
        for (const r of doc.items) rows.set(r.id, r);
        render();
      } catch (e) {
        if (!signal.aborted) replace(body, el('tr', null, el('td', { colspan: 7 }, problem(e))));
      }
    };
    // Subscribe first, then list: a run that changes in between comes as an event.
    stream('/runs/events', signal, {
      open: () => { replace(live, 'live'); live.classList.add('on'); load(); },
      event: (name, r) => {
        if (name === 'resync') { load(); return; }
        if (name !== 'run') return;
        const matches = (!agent || r.agent === agent) && (!status || r.status === status);
        if (matches) rows.set(r.id, r); else rows.delete(r.id);
        render();
      },
      lost: () => { replace(live, 'reconnecting…'); live.classList.remove('on'); },
      error: e => { replace(live, 'not live'); replace(body, el('tr', null, el('td', { colspan: 7 }, problem(e)))); },
    });
  }

  // ---- One run ------------------------------------------------------------------------------------
  async function runPage(signal, id) {
    const summary = el('section', { 'aria-labelledby': 'run-h' });
    const now = el('p', { class: 'activity', id: 'activity', 'aria-live': 'polite' });
    const steps = el('ol', { class: 'timeline', id: 'timeline', 'aria-label': 'Steps' });
    const children = el('section', { 'aria-labelledby': 'children-h' });
    replace(main, summary, children, el('h2', null, 'Timeline'), now, steps);

    const refresh = async () => {
      try {
        const run = await api('/runs/' + encodeURIComponent(id), { signal });
        renderSummary(summary, run, refresh);
        const kids = await api('/runs?limit=200&parent=' + encodeURIComponent(id), { signal });
        await renderChildren(children, kids.items, signal, 1);
      } catch (e) {
        if (!signal.aborted) replace(summary, heading('Run ' + id), problem(e));
      }
    };
    await refresh();
    stream('/runs/' + encodeURIComponent(id) + '/events', signal, {
      event: (name, data) => {
        if (name === 'activity') { replace(now, 'Now: ', data.activity, ' ', data.detail || ''); return; }
        if (name === 'end') { replace(now); refresh(); return; }
        replace(now);
        steps.append(stepItem(data));
        if (/^(run\.|child\.|wait\.|step\.resolved)/.test(name)) refresh();
      },
      lost: () => replace(now, 'Connection lost; reconnecting…'),
      error: e => replace(now, problem(e)),
    });
  }

  function renderSummary(section, run, refresh) {
    const actions = el('p', { class: 'actions' });
    if (!['succeeded', 'failed', 'canceled'].includes(run.status)) {
      actions.append(el('button', { type: 'button', onclick: async () => {
        try { await api('/runs/' + encodeURIComponent(run.id) + '/cancel', { method: 'POST', body: { reason: 'canceled from the dashboard' } }); say('Cancel requested.'); refresh(); }
        catch (e) { say(e.message); }
      } }, 'Cancel run'));
    }
    actions.append(el('a', { href: '#/compare?a=' + encodeURIComponent(run.id) }, 'Compare with another run'));
    if (['succeeded', 'failed', 'canceled'].includes(run.status))
      actions.append(el('a', { href: '#/whatif/' + encodeURIComponent(run.id), id: 'whatif-link' }, 'Replay and what-if'));
    replace(section,
      el('h1', { id: 'run-h' }, 'Run ', el('code', null, run.id), ' ', badge(run.status)),
      run.failure ? el('p', { class: 'failure', id: 'failure' }, failureSentence(run.failure)) : null,
      dl([
        ['Agent', el('a', { href: '#/runs?agent=' + encodeURIComponent(run.agent) }, run.agent)],
        ['Kind', run.kind],
        ['Parent', run.parentRunId ? runLink(run.parentRunId) : null],
        ['Started by', run.actor],
        ['Created', time(run.createdAt)],
        ['Updated', time(run.updatedAt)],
        ['Tokens', tokens(run.usage)],
        ['Cost', money(run.cost)],
        ['Waiting for', run.waitingFor ? run.waitingFor.reason + (run.waitingFor.tool ? ': ' + run.waitingFor.tool : '') : null],
      ]),
      el('h2', null, 'Input'), el('pre', { class: 'text', id: 'run-input' }, run.input || ''),
      run.output != null ? [el('h2', null, 'Output'), el('pre', { class: 'text', id: 'run-output' }, run.output)] : null,
      run.error ? [el('h2', null, 'Error'), el('pre', { class: 'text error' }, run.error)] : null,
      actions);
  }

  async function renderChildren(section, items, signal, depth) {
    if (!items.length) { replace(section); return; }
    const list = await childTree(items, signal, depth);
    replace(section, el('h2', { id: 'children-h' }, 'Child runs'), list);
  }
  async function childTree(items, signal, depth) {
    const ul = el('ul', { class: 'tree' });
    for (const c of items.slice().sort((a, b) => (a.createdAt || '').localeCompare(b.createdAt || ''))) {
      const li = el('li', null, runLink(c.id), ' ', c.agent, ' ', badge(c.status), c.usage ? el('span', { class: 'muted' }, ' ' + tokens(c.usage) + ' ' + money(c.cost)) : null);
      if (depth < 4) {
        try {
          const grand = await api('/runs?limit=200&parent=' + encodeURIComponent(c.id), { signal });
          if (grand.items.length) li.append(await childTree(grand.items, signal, depth + 1));
        } catch { /* shown as a leaf */ }
      }
      ul.append(li);
    }
    return ul;
  }

  /** One journal entry on the timeline. */
  function stepItem(s) {
    const head = el('p', { class: 'step-head' }, el('span', { class: 'n' }, '#' + s.n), ' ', el('strong', null, s.kind), ' ', el('span', { class: 'muted' }, when(s.at)));
    const li = el('li', { class: 'step k-' + s.kind.replace(/[^a-z-]/g, '-'), 'data-kind': s.kind, 'data-n': s.n }, head);
    switch (s.kind) {
      case 'run.started':
        append(li, [dl([['Agent', s.agent], ['Started by', s.actor], ['Parent', s.parentRunId ? runLink(s.parentRunId) : null]]), el('pre', { class: 'text' }, s.input || '')]);
        break;
      case 'model.response': {
        const u = s.usage || {};
        append(li, [dl([['Model', s.model + (s.provider ? ' (' + s.provider + ')' : '') + (s.answeredBy && s.answeredBy !== s.model ? ', answered by ' + s.answeredBy : '')],
          ['Turn', s.turn], ['Tokens', tokens(u)], ['Cost', money(s.cost)], ['Finish', s.finishReason],
          ['Took', s.durationMs != null ? Math.round(s.durationMs) + ' ms' : null], ['Attempts', s.attempts > 1 ? s.attempts : null]]),
          s.text ? el('pre', { class: 'text' }, s.text) : null,
          (s.toolCalls || []).map(c => el('div', { class: 'call' }, 'asks for ', el('code', null, c.name), json(c.arguments)))]);
        break;
      }
      case 'tool.intent':
        append(li, [dl([['Tool', el('code', null, s.tool)], ['Effect', s.effect], ['Idempotency key', s.idempotencyKey]]), json(s.arguments)]);
        break;
      case 'tool.result':
        append(li, [dl([['Tool', el('code', null, s.tool)], ['Outcome', s.isError ? 'error' : 'ok'], ['Took', Math.round(s.durationMs || 0) + ' ms'],
          ['Attempts', s.attempts > 1 ? s.attempts : null], ['Note', s.note], ['Failure', s.failure]]), json(s.content)]);
        if (s.isError) li.classList.add('bad');
        break;
      case 'tool.rejected':
        li.classList.add('bad');
        append(li, [dl([['Tool', el('code', null, s.tool)], ['Error', s.error]]), json(s.arguments)]);
        break;
      case 'policy.applied':
        append(li, dl([['Tool', el('code', null, s.tool)], ['Action', s.action], ['Rule', s.rule], ['Reason', s.reason]]));
        break;
      case 'run.waiting': {
        const w = s.waitingFor || {};
        append(li, [dl([['Waits for', w.reason], ['Tool', w.tool ? el('code', null, w.tool) : null], ['Rule', w.rule], ['Question', w.question],
          ['Approvers', w.approvers ? w.approvers.join(', ') : null], ['Deadline', time(w.deadline)]]), w.arguments ? json(w.arguments) : null]);
        if (w.reason === 'approval') li.append(el('p', null, el('a', { href: '#/approvals' }, 'Answer in the approvals inbox')));
        break;
      }
      case 'wait.answered':
        append(li, dl([['Step', s.step], ['Answer', s.answer], ['By', s.actor]]));
        break;
      case 'attempt.failed':
        li.classList.add('warn');
        append(li, dl([['Dependency', s.dependency], ['Attempt', s.attempt], ['Class', s['class']], ['Error', s.error],
          s.retryInMs != null ? ['Retry in', Math.round(s.retryInMs) + ' ms'] : ['Retry', 'none' + (s.gaveUp ? ' (gave up: ' + s.gaveUp + ')' : '')]]));
        break;
      case 'child.started':
        append(li, dl([['Child', runLink(s.childRunId)], ['Runs', s.target + ' (' + s.runKind + ')'], ['Role', s.label], ['Input', short(s.input, 300)]]));
        break;
      case 'child.finished':
        append(li, dl([['Child', runLink(s.childRunId)], ['Status', badge(s.status)], ['Tokens', tokens(s.usage)], ['Cost', money(s.cost)], ['Output', short(s.output, 300)], ['Error', s.error]]));
        break;
      case 'run.finished':
        if (s.status !== 'succeeded') li.classList.add('bad');
        append(li, [dl([['Status', badge(s.status)], ['Outcome', s.outcome], ['Error', s.error]]), s.failure ? el('p', { class: 'failure' }, failureSentence(s.failure)) : null,
          s.output != null ? el('pre', { class: 'text' }, s.output) : null]);
        break;
      default: {
        const rest = Object.assign({}, s);
        delete rest.n; delete rest.kind; delete rest.at;
        if (Object.keys(rest).length) li.append(json(rest));
      }
    }
    return li;
  }

  // ---- Agents -------------------------------------------------------------------------------------
  async function agentsPage(signal) {
    replace(main, heading('Agents and teams'), el('p', null, 'Loading…'));
    try {
      const [doc, costs] = await Promise.all([api('/agents', { signal }), api('/costs?by=agent', { signal }).catch(() => null)]);
      const spent = new Map(((costs && costs.rows) || []).map(r => [r.agent, r]));
      const table = el('table', { id: 'agents' }, el('caption', null, 'Deployed agents and teams; runs, tokens and cost of all time (a team\'s are its members\')'),
        el('thead', null, el('tr', null, ['Name', 'Kind', 'Model or pattern', 'Tools or members', 'Description', 'Runs', 'Tokens', 'Cost'].map(h => el('th', { scope: 'col' }, h)))),
        el('tbody', null, doc.items.map(a => {
          const c = spent.get(a.name);
          return el('tr', { 'data-agent': a.name },
            el('td', null, el('a', { href: '#/runs?agent=' + encodeURIComponent(a.name) }, a.name)),
            el('td', null, a.kind),
            el('td', null, a.kind === 'team' ? a.pattern : a.model),
            el('td', null, (a.kind === 'team' ? a.members : a.tools || []).join(', ')),
            el('td', null, a.description || ''),
            el('td', { class: 'num' }, c ? c.runs : ''),
            el('td', { class: 'num' }, c ? tokens(c) : ''),
            el('td', { class: 'num' }, c ? money(c.cost) : ''));
        })));
      replace(main, heading('Agents and teams'), doc.items.length ? table : el('p', null, 'Nothing is deployed.'));
    } catch (e) {
      if (!signal.aborted) replace(main, heading('Agents and teams'), problem(e));
    }
  }

  // ---- Approvals ----------------------------------------------------------------------------------
  async function approvalsPage(signal) {
    const list = el('div', { id: 'approvals' });
    const live = el('span', { class: 'live' }, 'connecting…');
    replace(main, heading('Approvals ', live), el('p', { class: 'muted' }, 'Tool calls that runs wait on, those your key may answer.'), list);
    const load = async () => {
      try {
        const doc = await api('/approvals?state=open', { signal });
        replace(list, doc.items.length ? doc.items.map(a => approvalCard(a, load)) : el('p', null, 'Nothing waits for an answer.'));
      } catch (e) {
        if (signal.aborted) return;
        replace(list, problem(e), e.status === 403 ? el('p', null, 'Answering approvals needs a key with the approver (or admin) role.') : null);
      }
    };
    stream('/runs/events', signal, {
      open: () => { replace(live, 'live'); live.classList.add('on'); load(); },
      event: () => load(),
      lost: () => { replace(live, 'reconnecting…'); live.classList.remove('on'); },
      error: () => { replace(live, 'not live'); load(); },
    });
  }

  function approvalCard(a, reload) {
    const idBase = 'ap-' + String(a.id).replace(/[^A-Za-z0-9]/g, '-');
    const reason = el('input', { id: idBase + '-reason', type: 'text', name: 'reason' });
    const args = a.editableArguments ? el('textarea', { id: idBase + '-args', rows: 4, spellcheck: 'false' }) : null;
    if (args) args.value = JSON.stringify(a.arguments, null, 2);
    const out = el('p', { class: 'result', 'aria-live': 'polite' });
    const decide = async decision => {
      const body = { decision };
      if (reason.value) body.reason = reason.value;
      if (args && decision === 'approve') {
        try {
          const edited = JSON.parse(args.value);
          if (JSON.stringify(edited) !== JSON.stringify(a.arguments)) body.arguments = edited;
        } catch (e) { replace(out, problem('The arguments are not JSON: ' + e.message)); return; }
      }
      try {
        await api('/approvals/' + encodeURIComponent(a.id) + '/decision', { method: 'POST', body });
        replace(out, decision === 'approve' ? 'Approved.' : 'Rejected.');
        say((decision === 'approve' ? 'Approved ' : 'Rejected ') + a.tool + ' for run ' + a.runId + '.');
        reload();
      } catch (e) { replace(out, problem(e)); }
    };
    return el('article', { class: 'card approval', 'data-approval': a.id, 'aria-labelledby': idBase + '-h' },
      el('h2', { id: idBase + '-h' }, el('code', null, a.tool), ' for ', a.agent, ' ', el('span', { class: 'muted' }, 'run '), runLink(a.runId)),
      dl([['Rule', a.rule], ['Question', a.question], ['Approvers', (a.approvers || []).join(', ') || 'anyone who may approve'],
        ['Level', a.level], ['Approvals', (a.approvedBy || []).length + ' of ' + (a.required || 1)], ['Waiting since', time(a.waitingSince)], ['Deadline', time(a.deadline)]]),
      args ? [el('label', { for: idBase + '-args' }, 'Arguments (editable)'), args] : [el('p', null, 'Arguments'), json(a.arguments)],
      el('p', null, el('label', { for: idBase + '-reason' }, 'Reason '), reason),
      el('p', { class: 'actions' },
        el('button', { type: 'button', class: 'approve', onclick: () => decide('approve') }, 'Approve'),
        el('button', { type: 'button', class: 'reject', onclick: () => decide('reject') }, 'Reject')),
      out);
  }

  // ---- Failures -----------------------------------------------------------------------------------
  async function failuresPage(signal) {
    const since = query().get('since') || '';
    const input = el('input', { id: 'f-since', name: 'since', type: 'text', placeholder: '2026-12-01T00:00:00Z', value: since });
    const form = el('form', { class: 'filters', onsubmit: ev => {
      ev.preventDefault();
      location.hash = '#/failures' + (input.value ? '?since=' + encodeURIComponent(input.value) : '');
    } }, el('label', { for: 'f-since' }, 'Since'), input, el('button', { type: 'submit' }, 'Show'));
    const out = el('div', { id: 'failures' }, el('p', null, 'Loading…'));
    replace(main, heading('Failures'), el('p', { class: 'muted' }, 'Failed and canceled runs grouped by cause, dependency and error signature, the most frequent first.'), form, out);
    try {
      const doc = await api('/failures' + (since ? '?since=' + encodeURIComponent(since) : ''), { signal });
      replace(out, doc.groups.length ? el('table', { id: 'failure-groups' }, el('caption', null, 'Failure groups'),
        el('thead', null, el('tr', null, ['Cause', 'Dependency', 'Runs', 'First seen', 'Last seen', 'Example', 'Signature and hint', 'Per day'].map(h => el('th', { scope: 'col' }, h)))),
        el('tbody', null, doc.groups.map(g => el('tr', { 'data-cause': g.cause },
          el('td', null, g.cause, g.kind ? el('span', { class: 'muted' }, ' ' + g.kind) : null),
          el('td', null, g.dependency || ''),
          el('td', { class: 'num' }, g.count),
          el('td', null, time(g.firstSeen)),
          el('td', null, time(g.lastSeen)),
          el('td', null, runLink(g.exampleRun), g.exampleStep != null ? ' at step ' + g.exampleStep : ''),
          el('td', null, el('code', null, g.signature || ''), el('br'), g.hint || ''),
          el('td', null, Object.entries(g.byDay || {}).map(([d, n]) => el('div', null, d + ': ' + n)))))))
        : el('p', null, 'No failed or canceled runs.'));
    } catch (e) {
      if (!signal.aborted) replace(out, problem(e));
    }
  }

  // ---- Compare two runs ---------------------------------------------------------------------------
  async function comparePage(signal) {
    const q = query();
    const a = el('input', { id: 'c-a', name: 'a', type: 'text', value: q.get('a') || '', size: 24 });
    const b = el('input', { id: 'c-b', name: 'b', type: 'text', value: q.get('b') || '', size: 24 });
    const form = el('form', { class: 'filters', onsubmit: ev => {
      ev.preventDefault();
      location.hash = '#/compare?a=' + encodeURIComponent(a.value.trim()) + '&b=' + encodeURIComponent(b.value.trim());
    } }, el('label', { for: 'c-a' }, 'Run A'), a, el('label', { for: 'c-b' }, 'Run B'), b, el('button', { type: 'submit' }, 'Compare'));
    const out = el('div', { id: 'compare' });
    replace(main, heading('Compare two runs'),
      el('p', { class: 'muted' }, 'Two runs\' steps side by side, step by step; rows that differ are marked. A what-if fork is made with ',
        el('code', null, 'bureau replay ID --from-step N'), ' (the CLI shows that pair itself).'), form, out);
    if (!q.get('a') || !q.get('b')) return;
    try {
      const [ra, rb] = await Promise.all([api('/runs/' + encodeURIComponent(q.get('a')), { signal }), api('/runs/' + encodeURIComponent(q.get('b')), { signal })]);
      const n = Math.max(ra.steps.length, rb.steps.length);
      const rows = [];
      let differ = 0;
      for (let i = 0; i < n; i++) {
        const sa = ra.steps[i], sb = rb.steps[i];
        const same = sa && sb && comparable(sa) === comparable(sb);
        if (!same) differ++;
        rows.push(el('tr', { class: same ? '' : 'diff' }, el('td', { class: 'num' }, i + 1),
          el('td', null, sa ? stepLine(sa) : ''), el('td', null, sb ? stepLine(sb) : ''), el('td', null, same ? 'same' : 'differs')));
      }
      replace(out, el('p', null, differ ? differ + ' of ' + n + ' steps differ.' : 'The runs took the same steps.'),
        el('table', { class: 'compare' }, el('caption', null, 'Steps of run A and run B'),
          el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'Step'), el('th', { scope: 'col' }, runLink(ra.id, 'A: ' + ra.agent + ' ' + ra.status)),
            el('th', { scope: 'col' }, runLink(rb.id, 'B: ' + rb.agent + ' ' + rb.status)), el('th', { scope: 'col' }, ''))),
          el('tbody', null, rows)));
    } catch (e) {
      if (!signal.aborted) replace(out, problem(e));
    }
  }
  /** A step without what always differs between runs (time, durations, ids, keys). */
  function comparable(s) {
    return JSON.stringify(s, (k, v) => ['at', 'durationMs', 'idempotencyKey', 'childRunId', 'parentRunId', 'rootRunId', 'traceParent', 'actor', 'n'].includes(k) ? undefined : v);
  }
  function stepLine(s) {
    let what = '';
    if (s.kind === 'model.response') what = (s.toolCalls && s.toolCalls.length ? 'calls ' + s.toolCalls.map(c => c.name).join(', ') : short(s.text, 160)) + ' · ' + tokens(s.usage);
    else if (s.kind === 'tool.intent' || s.kind === 'tool.result') what = s.tool + ' ' + short(s.kind === 'tool.intent' ? s.arguments : s.content, 160);
    else if (s.kind === 'run.finished') what = s.status + ' ' + short(s.output || s.error, 160);
    else if (s.kind === 'run.started') what = short(s.input, 160);
    return [el('strong', null, s.kind), ' ', what];
  }

  // ---- Replay and what-if of one run ---------------------------------------------------------------
  async function whatIfPage(signal, id) {
    const run = await api('/runs/' + encodeURIComponent(id), { signal });
    let agent = null;
    try { agent = await api('/agents/' + encodeURIComponent(run.agent), { signal }); } catch { /* the form works without it */ }

    const check = el('div', { id: 'replay-result', 'aria-live': 'polite' });
    const checkButton = el('button', { type: 'button', id: 'replay-check', onclick: async () => {
      checkButton.disabled = true;
      replace(check, el('p', { class: 'muted' }, 'Replaying…'));
      try {
        const r = await api('/runs/' + encodeURIComponent(id) + '/replay', { method: 'POST', signal });
        const d = r.divergence;
        replace(check, d
          ? [el('p', { class: 'failure', id: 'replay-verdict', 'data-reproduced': 'false' }, 'Diverged at step ' + d.step + ' of ' + r.steps + ' (steps 1–' + r.stepsReproduced + ' reproduced)' + (d.note ? ': ' + d.note : '.')),
             el('table', { class: 'compare' }, el('caption', null, 'Step ' + d.step + ': recorded and replayed'),
               el('tbody', null,
                 el('tr', null, el('th', { scope: 'row' }, 'recorded'), el('td', null, d.expected ? stepLine(d.expected) : '(nothing)')),
                 el('tr', { class: 'diff' }, el('th', { scope: 'row' }, 'replayed'), el('td', null, d.actual ? stepLine(d.actual) : '(nothing)'))))]
          : el('p', { class: 'ok', id: 'replay-verdict', 'data-reproduced': 'true' }, 'Reproduced: the engine takes the same ' + r.steps + ' steps (no model or tool was called).'));
      } catch (e) {
        if (!signal.aborted) replace(check, problem(e));
      } finally { checkButton.disabled = false; }
    } }, 'Check replay');

    const last = run.steps.length;
    const firstAnswer = run.steps.find(s => s.kind === 'model.response');
    const fromStep = el('input', { id: 'w-from', name: 'fromStep', type: 'number', min: 1, max: Math.max(1, last - 1), required: true,
      value: firstAnswer ? Math.max(1, firstAnswer.n - 1) : 1 });
    const model = el('input', { id: 'w-model', name: 'model', type: 'text', size: 20, placeholder: agent && agent.model ? agent.model + ' (the agent\'s)' : 'the agent\'s model' });
    const instructions = el('textarea', { id: 'w-instructions', name: 'instructions', rows: 3, placeholder: agent && agent.instructions ? short(agent.instructions, 300) : 'the agent\'s instructions' });
    const writes = el('input', { id: 'w-writes', name: 'allowWrites', type: 'checkbox' });
    const out = el('div', { id: 'whatif-result', 'aria-live': 'polite' });
    const go = el('button', { type: 'submit', id: 'whatif-run' }, 'Run what-if');
    const form = el('form', { class: 'whatif', 'aria-label': 'What-if', onsubmit: async ev => {
      ev.preventDefault();
      go.disabled = true;
      replace(out, el('p', { class: 'muted' }, 'The fork is running…'));
      const body = { fromStep: Number(fromStep.value) };
      if (model.value.trim()) body.model = model.value.trim();
      if (instructions.value.trim()) body.instructions = instructions.value;
      if (writes.checked) body.allowWrites = true;
      try {
        renderFork(out, run, await api('/runs/' + encodeURIComponent(id) + '/whatif', { method: 'POST', body, signal }));
      } catch (e) {
        if (!signal.aborted) replace(out, problem(e));
      } finally { go.disabled = false; }
    } },
      el('p', null, el('label', { for: 'w-from' }, 'Go on after step'), ' ', fromStep, ' ', el('span', { class: 'muted' }, 'of ' + last)),
      el('p', null, el('label', { for: 'w-model' }, 'Model'), ' ', model),
      el('p', null, el('label', { for: 'w-instructions' }, 'Instructions'), instructions),
      el('p', null, writes, ' ', el('label', { for: 'w-writes' }, 'Let the fork call write tools (left out by default: a what-if should change nothing)')),
      go);

    replace(main,
      el('h1', null, 'Replay and what-if of run ', runLink(run.id, run.id), ' ', badge(run.status)),
      el('p', { class: 'muted' }, 'Both run in a throwaway store beside this host\'s: nothing here changes the run or the database. The CLI does the same with ',
        el('code', null, 'bureau replay ' + run.id), ' and ', el('code', null, '--from-step N'), '.'),
      el('section', { class: 'card', 'aria-labelledby': 'replay-h' }, el('h2', { id: 'replay-h' }, 'Replay check'),
        el('p', null, 'Re-executes the run against its journal, with no model or tool call, and says whether this engine and the agent as deployed now take the same steps.'),
        checkButton, check),
      el('section', { class: 'card', 'aria-labelledby': 'whatif-h' }, el('h2', { id: 'whatif-h' }, 'What-if'),
        el('p', null, 'Forks the run: the fork shares its steps up to the one you pick, then goes on with the model and instructions below (calling the model for real, or the scripted one).'),
        form, out));
  }

  function renderFork(out, run, doc) {
    const f = doc.fork;
    const rows = doc.steps.map(s => el('tr', { class: s.same ? (s.shared ? 'shared' : '') : 'diff', 'data-step': s.n, 'data-same': String(s.same) },
      el('td', { class: 'num' }, s.n),
      el('td', null, s.original ? stepLine(s.original) : ''),
      el('td', null, s.shared ? el('span', { class: 'muted' }, '(shared)') : s.fork ? stepLine(s.fork) : ''),
      el('td', null, s.shared ? 'shared' : s.same ? 'same' : 'differs')));
    replace(out,
      el('p', { id: 'whatif-verdict' }, 'The fork ', badge(f.status), ' on model ', el('code', null, f.model),
        f.instructionsChanged ? ' with new instructions' : '', '. ',
        doc.divergesAt ? 'The runs diverge at step ' + doc.divergesAt + '.' : 'The fork took the same steps as the original.'),
      f.scripted ? el('p', { class: 'scripted', id: 'whatif-scripted' }, 'Scripted model: the fork\'s answers are scripted (rules for tests and demos), not a real model\'s.') : null,
      f.writeToolsLeftOut.length ? el('p', { class: 'muted' }, 'Write tools left out of the fork: ' + f.writeToolsLeftOut.join(', ')) : null,
      f.waitingFor ? el('p', { class: 'muted' }, 'The fork stopped waiting (' + f.waitingFor + '); it is not kept.') : null,
      dl([['Original output', run.output], ['Fork output', f.output], ['Fork error', f.error]]),
      el('table', { class: 'compare', id: 'whatif-steps' }, el('caption', null, 'Steps of the original run and of the fork'),
        el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'Step'), el('th', { scope: 'col' }, 'Original ' + run.id),
          el('th', { scope: 'col' }, 'Fork ' + f.id), el('th', { scope: 'col' }, ''))),
        el('tbody', null, rows)));
  }

  // ---- Router -------------------------------------------------------------------------------------
  function route(ev) {
    if (page) page.abort();
    if (ev) main.focus({ preventScroll: true }); // a new page: screen readers start at its content
    page = new AbortController();
    const signal = page.signal;
    const path = location.hash.replace(/^#/, '').split('?')[0] || '/runs';
    for (const a of document.querySelectorAll('nav a')) {
      const current = path.startsWith(a.getAttribute('href').slice(1)) || ((path.startsWith('/run/') || path.startsWith('/whatif/')) && a.getAttribute('href') === '#/runs');
      if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    say('');
    const run = path.match(/^\/run\/(.+)$/);
    const whatIf = path.match(/^\/whatif\/(.+)$/);
    const show = run ? runPage(signal, decodeURIComponent(run[1]))
      : whatIf ? whatIfPage(signal, decodeURIComponent(whatIf[1]))
      : path === '/agents' ? agentsPage(signal)
      : path === '/approvals' ? approvalsPage(signal)
      : path === '/failures' ? failuresPage(signal)
      : path === '/compare' ? comparePage(signal)
      : runsPage(signal);
    show.catch(e => { if (!signal.aborted) replace(main, problem(e)); });
    document.title = 'Bureau · ' + (run ? 'run ' + decodeURIComponent(run[1]) : whatIf ? 'what-if of ' + decodeURIComponent(whatIf[1]) : path.slice(1));
  }

  const keyInput = document.getElementById('key');
  document.getElementById('key-form').addEventListener('submit', ev => {
    ev.preventDefault();
    if (keyInput.value.trim()) sessionStorage.setItem(KEY, keyInput.value.trim());
    keyInput.value = '';
    keyInput.placeholder = key() ? 'key set for this tab' : 'none: loopback access';
    say(key() ? 'Using the API key for this tab.' : '');
    route(null);
  });
  document.getElementById('key-forget').addEventListener('click', () => {
    sessionStorage.removeItem(KEY);
    keyInput.placeholder = 'none: loopback access';
    say('Forgot the API key.');
    route(null);
  });
  if (key()) keyInput.placeholder = 'key set for this tab';
  window.addEventListener('hashchange', route);
  route(null);
})();
