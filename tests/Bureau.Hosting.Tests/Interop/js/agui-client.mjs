// AG-UI's own client (@ag-ui/client's HttpAgent, which verifies the event sequence) and AG-UI's zod schemas
// (@ag-ui/core/schemas) against a Bureau host (run by InteropClientTests): BUREAU_URL, BUREAU_KEY (an admin key:
// it starts runs and answers their interrupts). Every event received is validated against the protocol's types.
// Prints one JSON document with what it saw; the C# test asserts on it and on the host's store.
import { HttpAgent } from '@ag-ui/client';
import { EventSchemas } from '@ag-ui/core/schemas';

const base = process.env.BUREAU_URL + '/v1';
const headers = { Authorization: 'Bearer ' + process.env.BUREAU_KEY };
const invalid = [];
const validate = (where, event) => {
  const r = EventSchemas.safeParse(event);
  if (!r.success) invalid.push({ where, type: event?.type ?? null, issues: r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) });
};

/** Reads an SSE response into its events (data lines as JSON), validating each. */
async function rawEvents(where, response) {
  if (!response.ok) throw new Error(`${where}: HTTP ${response.status}: ${await response.text()}`);
  const text = await response.text();
  const events = [];
  for (const block of text.split('\n\n')) {
    const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, ''));
    if (data.length === 0) continue;
    const event = JSON.parse(data.join('\n'));
    validate(where, event);
    events.push(event);
  }
  return { events, runId: response.headers.get('x-bureau-run-id') };
}

/** Runs an HttpAgent, recording (and validating) every event its pipeline applied. */
async function run(agent, where, parameters) {
  const events = [];
  let finished = null;
  let error = null;
  const result = await agent.runAgent(parameters, {
    onEvent: ({ event }) => { validate(where, event); events.push(event.type); },
    onRunFinishedEvent: ({ outcome, interrupts, result }) => { finished = { outcome, interrupts: interrupts ?? null, result: result ?? null }; },
    onRunErrorEvent: ({ event }) => { error = { message: event.message, code: event.code ?? null }; },
  });
  return { events, finished, error, newMessages: result.newMessages };
}

const out = {};

// 1. Raw: POST a RunAgentInput and read the stream as it comes.
{
  const input = {
    threadId: 'thread-raw', runId: 'run-raw-1', state: {}, tools: [], context: [], forwardedProps: {},
    messages: [{ id: 'u1', role: 'user', content: 'raw ag-ui' }],
  };
  const res = await fetch(`${base}/agents/echo/agui`, {
    method: 'POST', headers: { ...headers, 'Content-Type': 'application/json', Accept: 'text/event-stream' }, body: JSON.stringify(input),
  });
  const { events, runId } = await rawEvents('raw', res);
  out.raw = { runId, types: events.map((e) => e.type), first: events[0], last: events[events.length - 1], text: events.filter((e) => e.type === 'TEXT_MESSAGE_CONTENT').map((e) => e.delta).join('') };
}

// 2. HttpAgent, plain.
{
  const agent = new HttpAgent({ url: `${base}/agents/echo/agui`, headers, threadId: 'thread-echo' });
  agent.addMessage({ id: 'm1', role: 'user', content: 'from the ag-ui client' });
  const r = await run(agent, 'echo');
  out.echo = { ...r, messages: agent.messages };
}

// 3. HttpAgent, a run that waits for approval: RUN_FINISHED with outcome interrupt, then resume with the approval.
{
  const agent = new HttpAgent({ url: `${base}/agents/refunder/agui`, headers, threadId: 'thread-refund' });
  agent.addMessage({ id: 'm1', role: 'user', content: 'refund order 7' });
  const first = await run(agent, 'refund');
  const interrupt = first.finished?.interrupts?.[0] ?? null;
  let second = null;
  if (interrupt) {
    second = await run(agent, 'refund-resume', { resume: [{ interruptId: interrupt.id, status: 'resolved', payload: { approved: true, reason: 'ok from ag-ui' } }] });
  }
  out.refund = { first, interrupt, second, messages: agent.messages };
}

// 4. GET a finished run's journal as AG-UI events.
if (out.refund.interrupt) {
  const runId = out.refund.interrupt.metadata.bureau.runId;
  const { events } = await rawEvents('replay', await fetch(`${base}/runs/${runId}/agui`, { headers }));
  out.replay = { types: events.map((e) => e.type), last: events[events.length - 1], results: events.filter((e) => e.type === 'TOOL_CALL_RESULT').map((e) => e.content) };
}

// 5. A run that fails: RUN_ERROR.
{
  const agent = new HttpAgent({ url: `${base}/agents/spinner/agui`, headers, threadId: 'thread-spin' });
  agent.addMessage({ id: 'm1', role: 'user', content: 'spin' });
  let thrown = null;
  let r = null;
  try {
    r = await run(agent, 'spinner');
  } catch (e) {
    thrown = String(e?.message ?? e);
  }
  out.failing = { events: r?.events ?? null, error: r?.error ?? null, thrown };
}

out.invalid = invalid;
process.stdout.write(JSON.stringify(out));
