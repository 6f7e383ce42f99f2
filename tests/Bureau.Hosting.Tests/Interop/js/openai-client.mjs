// The official openai client against a Bureau host (run by InteropClientTests): BUREAU_URL, BUREAU_KEY.
// Prints one JSON document with what the client saw; the C# test asserts on it and on the host's store.
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: process.env.BUREAU_URL + '/v1',
  apiKey: process.env.BUREAU_KEY,
  maxRetries: 0,
  timeout: 60_000,
});
const user = (content) => [{ role: 'user', content }];
const caught = async (f) => {
  try {
    await f();
    return { thrown: false };
  } catch (e) {
    return { thrown: true, name: e.constructor.name, status: e.status ?? null, type: e.type ?? null, code: e.code ?? null, param: e.param ?? null, message: e.message };
  }
};
const out = {};

out.models = [];
for await (const m of client.models.list()) out.models.push({ id: m.id, object: m.object, owned_by: m.owned_by });

{
  const { data, response } = await client.chat.completions.create({ model: 'echo', messages: user('from node') }).withResponse();
  out.plain = {
    id: data.id, object: data.object, model: data.model, header: response.headers.get('x-bureau-run-id'),
    content: data.choices[0].message.content, role: data.choices[0].message.role, finish: data.choices[0].finish_reason, usage: data.usage,
  };
}

{
  const stream = await client.chat.completions.create({
    model: 'echo', messages: user('streamed from node'), stream: true, stream_options: { include_usage: true },
  });
  const s = { ids: [], text: '', finish: null, usage: null, chunks: 0 };
  for await (const chunk of stream) {
    s.chunks++;
    if (!s.ids.includes(chunk.id)) s.ids.push(chunk.id);
    const choice = chunk.choices[0];
    if (choice) {
      s.text += choice.delta?.content ?? '';
      s.finish = choice.finish_reason ?? s.finish;
    }
    if (chunk.usage) s.usage = chunk.usage;
  }
  out.streamed = s;
}

{
  const r = await client.responses.create({ model: 'echo', input: 'responses from node' });
  out.responses = { id: r.id, status: r.status, text: r.output_text, usage: r.usage };
  const again = await client.responses.retrieve(r.id);
  out.retrieved = { id: again.id, status: again.status, text: again.output_text };
}

{
  const stream = await client.responses.create({ model: 'echo', input: 'responses streamed from node', stream: true });
  const s = { types: [], delta: '', completed: null };
  for await (const ev of stream) {
    s.types.push(ev.type);
    if (ev.type === 'response.output_text.delta') s.delta += ev.delta;
    if (ev.type === 'response.completed') s.completed = { id: ev.response.id, status: ev.response.status, text: ev.response.output_text ?? null };
  }
  out.responsesStreamed = s;
}

out.errors = {
  unknownModel: await caught(() => client.chat.completions.create({ model: 'nobody', messages: user('x') })),
  lastNotUser: await caught(() => client.chat.completions.create({ model: 'echo', messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }] })),
  clientTools: await caught(() => client.chat.completions.create({
    model: 'echo', messages: user('x'),
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } }],
  })),
  failedRun: await caught(() => client.chat.completions.create({ model: 'spinner', messages: user('spin') })),
  failedRunStreamed: await caught(async () => {
    const stream = await client.chat.completions.create({ model: 'spinner', messages: user('spin again'), stream: true });
    for await (const _ of stream) { /* the error comes as an event */ }
  }),
  badKey: await caught(() => new OpenAI({ baseURL: process.env.BUREAU_URL + '/v1', apiKey: 'bk_nope_nope', maxRetries: 0 }).models.list()),
};

process.stdout.write(JSON.stringify(out));
