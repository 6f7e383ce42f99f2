// Drives a Bureau host with the A2A JS SDK's client (protocol 1.0), as any A2A client would: it reads the agent
// card, picks the binding the test asks for, sends a message (blocking), streams one, gets, lists, subscribes to
// and cancels tasks. Exits non-zero (with the reason on stderr) at the first answer that is not what A2A promises.
// Usage: node client.mjs BASE_URL BINDING [API_KEY]   (BINDING: JSONRPC or HTTP+JSON)
import { randomUUID } from 'node:crypto';
import {
  ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory, RestTransportFactory,
} from '@a2a-js/sdk/client';

const [base, binding, key] = process.argv.slice(2);
const fetchImpl = (url, init = {}) => {
  const headers = new Headers(init.headers ?? {});
  if (key) headers.set('Authorization', `Bearer ${key}`);
  return fetch(url, { ...init, headers });
};
const factory = new ClientFactory(ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
  transports: [new JsonRpcTransportFactory({ fetchImpl }), new RestTransportFactory({ fetchImpl })],
  cardResolver: new DefaultAgentCardResolver({ fetchImpl }),
  preferredTransports: [binding],
}));

const TASK_STATE = { SUBMITTED: 1, WORKING: 2, COMPLETED: 3, FAILED: 4, CANCELED: 5, INPUT_REQUIRED: 6 };
const stateName = (s) => Object.entries(TASK_STATE).find(([, v]) => v === s)?.[0] ?? String(s);
function check(condition, what, actual) {
  if (!condition) {
    console.error(`FAILED (${binding}): ${what}; got ${JSON.stringify(actual, (k, v) => (typeof v === 'bigint' ? String(v) : v))}`);
    process.exit(1);
  }
}
const text = (value) => ({ content: { $case: 'text', value }, metadata: undefined, filename: '', mediaType: '' });
const message = (value, contextId = '') => ({
  messageId: randomUUID(), contextId, taskId: '', role: 1, parts: [text(value)], metadata: undefined, extensions: [], referenceTaskIds: [],
});
const partText = (part) => (part?.content?.$case === 'text' ? part.content.value : undefined);
const log = (what, value) => console.log(JSON.stringify({ binding, what, ...value }));

// The card of agent "echo", and a client on the binding the test picked.
const echo = await factory.createFromUrl(`${base}/a2a/agents/echo/`);
check(echo.agentCard.name === 'echo', 'the card names the agent', echo.agentCard.name);
check(echo.protocolVersion === '1.0' && echo.transport.protocolName === binding, 'the client speaks A2A 1.0 over the binding asked for', [echo.protocolVersion, echo.transport.protocolName]);

// 1. SendMessage, blocking: the answer is the finished task, its output the artifact.
const contextId = randomUUID();
const first = message('hello', contextId);
const task = await echo.sendMessage({ tenant: '', message: first, configuration: undefined, metadata: undefined });
check(task.id && task.contextId === contextId, 'the task keeps the client\'s contextId', task);
check(task.status?.state === TASK_STATE.COMPLETED, 'a blocking send answers the completed task', stateName(task.status?.state));
check(partText(task.artifacts?.[0]?.parts?.[0]) === 'echo: hello', 'the output is the task\'s artifact', task.artifacts);
log('send', { task: task.id, state: stateName(task.status.state), output: partText(task.artifacts[0].parts[0]) });

// The same message again (a client retrying): the same task, nothing started twice.
const again = await echo.sendMessage({ tenant: '', message: first, configuration: undefined, metadata: undefined });
check(again.id === task.id, 'a message sent twice (same messageId) answers the same task', again.id);

// 2. SendStreamingMessage: the task first, then its updates, ending with the artifact and COMPLETED.
const events = [];
for await (const e of echo.sendMessageStream({ tenant: '', message: message('streamed', contextId), configuration: undefined, metadata: undefined })) {
  events.push(e.payload);
}
check(events[0]?.$case === 'task', 'a stream begins with the task', events.map((e) => e.$case));
const streamedId = events[0].value.id;
const artifact = events.find((e) => e.$case === 'artifactUpdate');
check(partText(artifact?.value.artifact?.parts?.[0]) === 'echo: streamed', 'the stream carries the output as an artifact update', artifact);
const last = events.at(-1);
check(last.$case === 'statusUpdate' && last.value.status.state === TASK_STATE.COMPLETED && last.value.taskId === streamedId,
  'a stream ends with the COMPLETED status of its task', last);
log('stream', { task: streamedId, events: events.map((e) => e.$case) });

// 3. GetTask: the task as stored (durably: it is the run), with its history.
const got = await echo.getTask({ tenant: '', id: task.id, historyLength: undefined });
check(got.id === task.id && got.status.state === TASK_STATE.COMPLETED, 'GetTask answers the task', got);
check(got.history?.[0]?.role === 1 && partText(got.history[0].parts[0]) === 'hello', 'the history begins with the user\'s message', got.history);

// 4. ListTasks: the context's tasks, newest first, paged.
const listed = await echo.listTasks({ tenant: '', contextId, status: 0, pageSize: 1, pageToken: '', historyLength: undefined, statusTimestampAfter: undefined, includeArtifacts: true });
check(listed.tasks.length === 1 && listed.tasks[0].id === streamedId, 'the first page holds the newest task of the context', listed.tasks.map((t) => t.id));
check(listed.totalSize === 2 && listed.nextPageToken, 'two tasks in the context, and a next page', listed);
const page2 = await echo.listTasks({ tenant: '', contextId, status: 0, pageSize: 1, pageToken: listed.nextPageToken, historyLength: undefined, statusTimestampAfter: undefined, includeArtifacts: undefined });
check(page2.tasks.length === 1 && page2.tasks[0].id === task.id && !page2.nextPageToken, 'the second page holds the first task, and no more', page2);
log('list', { tasks: [listed.tasks[0].id, page2.tasks[0].id], totalSize: listed.totalSize });

// 5. A task that does not end by itself (agent "slow"): returnImmediately, SubscribeToTask, CancelTask.
const slow = await factory.createFromUrl(`${base}/a2a/agents/slow/`);
const pending = await slow.sendMessage({
  tenant: '', message: message('never opened'), metadata: undefined,
  configuration: { acceptedOutputModes: [], taskPushNotificationConfig: undefined, historyLength: undefined, returnImmediately: true },
});
check([TASK_STATE.SUBMITTED, TASK_STATE.WORKING].includes(pending.status.state), 'returnImmediately answers an unfinished task', stateName(pending.status.state));
// Push notifications: the card offers them, and a URL on this machine is refused (SSRF) as a malformed request.
check(slow.agentCard.capabilities?.pushNotifications === true, 'the card offers push notifications', slow.agentCard.capabilities);
try {
  await slow.createTaskPushNotificationConfig({ tenant: '', id: '', taskId: pending.id, url: 'http://127.0.0.1:9/hook', token: '', authentication: undefined });
  check(false, 'a push URL on loopback is refused', 'an answer');
} catch (e) {
  check(e.name === 'RequestMalformedError' && e.message.includes('non-public'), 'a push URL on loopback is refused', `${e.name}: ${e.message}`);
}

// Subscribe, and cancel once the subscription is open (its first event is the task itself).
const stream = slow.resubscribeTask({ tenant: '', id: pending.id })[Symbol.asyncIterator]();
const seen = [(await stream.next()).value?.payload];
const canceled = await slow.cancelTask({ tenant: '', id: pending.id, metadata: undefined });
check(canceled.id === pending.id && canceled.status.state === TASK_STATE.CANCELED, 'CancelTask answers the canceled task', stateName(canceled.status.state));
for (let e = await stream.next(); !e.done; e = await stream.next()) seen.push(e.value.payload);
check(seen[0]?.$case === 'task' && seen[0].value.id === pending.id, 'a subscription begins with the task', seen.map((e) => e.$case));
check(seen.at(-1)?.$case === 'statusUpdate' && seen.at(-1).value.status.state === TASK_STATE.CANCELED, 'the subscription ends with CANCELED', seen.at(-1));
log('cancel', { task: pending.id, subscription: seen.map((e) => (e.$case === 'statusUpdate' ? stateName(e.value.status.state) : e.$case)) });

// 6. Errors as the SDK's typed errors.
try {
  await echo.getTask({ tenant: '', id: 'no-such-task', historyLength: undefined });
  check(false, 'GetTask of an unknown task fails', 'an answer');
} catch (e) {
  check(e.name === 'TaskNotFoundError', 'an unknown task is TaskNotFoundError', `${e.name}: ${e.message}`);
}
try {
  await echo.cancelTask({ tenant: '', id: task.id, metadata: undefined });
  check(false, 'canceling a completed task fails', 'an answer');
} catch (e) {
  check(e.name === 'TaskNotCancelableError', 'a finished task is TaskNotCancelableError', `${e.name}: ${e.message}`);
}
log('errors', { ok: true });
console.log(`OK ${binding}`);
