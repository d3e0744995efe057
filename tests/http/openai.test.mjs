// The official `openai` npm client against a real bitstackd over loopback TCP: chat and
// completions, non-streamed and streamed (with the usage chunk and the bitstack extension
// field), `stop`, an error (max_tokens: 0 → 400 BadRequestError), a wrong model name that
// is still served, and a mid-stream abort (AbortController) that must cancel the session
// (seen in /metrics). The daemon must exit 0 at the end (ASan: no leaks).
import { check, fail, metric, need, startDaemon, summary, waitStatus } from "./daemon.mjs";

const { default: OpenAI } = await need("openai");
const d = await startDaemon("openai");
try {
  const client = new OpenAI({ baseURL: d.base + "/v1", apiKey: "unused-on-loopback", maxRetries: 0, timeout: 60000 });

  // /v1/models
  const models = await client.models.list();
  const ids = models.data.map((m) => m.id);
  check(ids.length === 1 && ids[0] === "s", "models: " + JSON.stringify(ids));
  const model = ids[0];

  // chat, not streamed
  const chat = await client.chat.completions.create({
    model, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 12, temperature: 0,
  });
  check(chat.object === "chat.completion", "chat object " + chat.object);
  check(chat.choices[0].message.role === "assistant", "chat role");
  check(chat.choices[0].message.content.length > 0, "chat content empty");
  check(chat.choices[0].finish_reason === "length", "chat finish " + chat.choices[0].finish_reason);
  check(chat.usage.completion_tokens === 12 && chat.usage.prompt_tokens > 0, "chat usage " + JSON.stringify(chat.usage));

  // chat, streamed, with the usage chunk
  const stream = await client.chat.completions.create({
    model, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 12, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let text = "", chunks = 0, finish = null, usage = null, ext = null;
  for await (const c of stream) {
    chunks++;
    if (c.choices.length) {
      text += c.choices[0].delta.content || "";
      finish = c.choices[0].finish_reason || finish;
    }
    if (c.usage) usage = c.usage;
    if (c.bitstack) ext = c.bitstack;
  }
  check(chunks >= 3, "stream chunks " + chunks);
  check(text === chat.choices[0].message.content, `greedy stream ${JSON.stringify(text)} vs ${JSON.stringify(chat.choices[0].message.content)}`);
  check(finish === "length", "stream finish " + finish);
  check(usage && usage.completion_tokens === 12, "stream usage " + JSON.stringify(usage));
  check(ext && ext.stack_n > 0 && ext.resident_bytes > 0, "bitstack extension " + JSON.stringify(ext));

  // completions, not streamed and streamed
  const comp = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 40, temperature: 0 });
  check(comp.object === "text_completion", "completion object " + comp.object);
  const full = comp.choices[0].text;
  check(full.length > 0 && comp.choices[0].finish_reason === "length", "completion " + JSON.stringify(comp.choices[0]));
  const cs = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 40, temperature: 0, stream: true });
  let ctext = "";
  for await (const c of cs) ctext += c.choices[0]?.text || "";
  check(ctext === full, `streamed completion ${JSON.stringify(ctext)} vs ${JSON.stringify(full)}`);

  // stop: a word from the middle of the greedy text ends it there
  const words = full.trim().split(/\s+/);
  const stopWord = words[Math.min(4, words.length - 1)];
  const at = full.indexOf(stopWord);
  check(at > 0, "stop word in text");
  const stopped = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 40, temperature: 0, stop: [stopWord] });
  check(stopped.choices[0].finish_reason === "stop", "stop finish " + stopped.choices[0].finish_reason);
  check(stopped.choices[0].text === full.slice(0, at), `stop text ${JSON.stringify(stopped.choices[0].text)} vs ${JSON.stringify(full.slice(0, at))}`);
  const sstream = await client.completions.create({
    model, prompt: "Once upon a time", max_tokens: 40, temperature: 0, stop: stopWord, stream: true,
  });
  let stext = "", sfinish = null;
  for await (const c of sstream) {
    stext += c.choices[0]?.text || "";
    sfinish = c.choices[0]?.finish_reason || sfinish;
  }
  check(sfinish === "stop" && stext === full.slice(0, at), `streamed stop: ${sfinish} ${JSON.stringify(stext)}`);

  // errors: OpenAI-shaped, with the right status
  try {
    await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 0 });
    check(false, "max_tokens 0 was accepted");
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError && e.status === 400, `max_tokens 0: ${e.constructor.name} ${e.status}`);
    check(e.error && typeof e.error.message === "string" && e.error.message.length > 0, "error message " + JSON.stringify(e.error));
  }
  try {
    await client.chat.completions.create({ model, messages: [], max_tokens: 5 });
    check(false, "empty messages accepted");
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError, "empty messages: " + e.constructor.name);
  }

  // mid-stream abort: the session is cancelled, not run to its 4000 tokens
  const before = await metric(d.sock, "bitstack_sessions_cancelled_total");
  check(!Number.isNaN(before), "metric bitstack_sessions_cancelled_total present");
  const ac = new AbortController();
  const long = await client.chat.completions.create(
    { model, messages: [{ role: "user", content: "Tell me a story" }], max_tokens: 4000, stream: true },
    { signal: ac.signal });
  let got = 0, aborted = false;
  try {
    for await (const c of long) {
      if (++got === 3) ac.abort();
    }
  } catch (e) {
    aborted = e instanceof OpenAI.APIUserAbortError || e.name === "AbortError";
    if (!aborted) console.error("abort threw", e);
  }
  check(aborted || long.controller.signal.aborted, "the stream was aborted");
  const s = await waitStatus(d.sock, (st) => st.sessions === 0);
  check(s.sessions === 0, "sessions after abort " + s.sessions);
  const after = await metric(d.sock, "bitstack_sessions_cancelled_total");
  check(after === before + 1, `sessions cancelled ${before} -> ${after}`);
  const gen = await metric(d.sock, "bitstack_tokens_generated_total");
  check(gen < 12 * 2 + 40 * 4 + 4000, "the aborted session did not run to its end: tokens " + gen);

  // a model name the daemon does not have is served all the same, and the answer says which
  const other = await client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "Once" }], max_tokens: 3 });
  check(other.model === model && other.choices[0].message.content.length > 0, "another model name: " + other.model);

  // the daemon still serves
  const again = await client.completions.create({ model, prompt: "Once", max_tokens: 3 });
  check(again.choices[0].text.length > 0, "serves after the abort");
} catch (e) {
  console.error(e);
  check(false, "unexpected exception: " + e.message);
} finally {
  check(await d.stop(), "bitstackd exits 0 on SIGTERM");
}
if (!summary()) fail("openai client test failed");
console.log("openai client test passed");
