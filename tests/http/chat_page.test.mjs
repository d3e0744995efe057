// The chat page (GET /) in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): it loads with no request but to the daemon, shows the size, streams a
// reply from /v1/chat/completions, and after POST /v1/bitstack/budget {"budget":"50%"}
// the gauge and the size shrink and a resize event appears. A screenshot goes to LOG_DIR
// (meson's meson-logs), its path printed. Then a daemon with two models: the page lists
// both, the meter follows the one selected, and the reply comes from it.
import fs from "node:fs";
import path from "node:path";
import { check, fail, need, request, startDaemon, summary } from "./daemon.mjs";

const CHROMIUM = process.env.BS_CHROMIUM || "/usr/bin/chromium";
if (!fs.existsSync(CHROMIUM)) fail(`no browser at ${CHROMIUM}: install Debian's chromium (scripts/install-deps.sh)`);
const { chromium } = await need("playwright-core");
const logDir = process.argv[5] || process.cwd();
fs.mkdirSync(logDir, { recursive: true });

const d = await startDaemon("chat_page");
let browser;
try {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 900, height: 560 } });
  const foreign = [], errors = [];
  page.on("request", (r) => { if (!r.url().startsWith(d.base + "/")) foreign.push(r.url()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

  const resp = await page.goto(d.base + "/");
  check(resp.status() === 200, "GET / status " + resp.status());
  check(/text\/html/.test(resp.headers()["content-type"]), "GET / type " + resp.headers()["content-type"]);
  await page.waitForFunction(() => document.getElementById("size").dataset.n !== undefined, null, { timeout: 30000 });
  const before = await page.$eval("#size", (e) => ({ ...e.dataset, text: e.textContent }));
  const tgtBefore = await page.$eval("#tgt", (e) => e.style.left);
  check(Number(before.resident) > 0 && before.resident === before.target, "size at start " + JSON.stringify(before));
  check(await page.$eval("#model", (e) => e.textContent) === "s", "model name shown");

  // a message; the reply streams in (several chunks) and ends
  await page.fill("#input", "Once upon a time");
  await page.click("#send");
  await page.waitForSelector(".msg.user", { timeout: 30000 });
  await page.waitForFunction(() => {
    const a = document.querySelector(".msg.assistant");
    return a && (a.dataset.state === "done" || a.dataset.state === "error");
  }, null, { timeout: 60000 });
  const reply = await page.$eval(".msg.assistant", (e) => ({ ...e.dataset, text: e.textContent }));
  check(reply.state === "done", "reply state " + JSON.stringify(reply));
  check(Number(reply.chunks) > 1, "reply came in chunks: " + reply.chunks);
  check(reply.text.trim().length > 0, "reply text: " + JSON.stringify(reply.text));
  check(await page.$eval("#send", (e) => !e.disabled), "send enabled again");

  // a budget call: the page follows the shrink and lists the event
  const b = await request(d.sock, "POST", "/v1/bitstack/budget", { budget: "50%" });
  check(b.status === 200, "budget " + b.status + " " + b.body);
  const want = JSON.parse(b.body).target_bytes;
  await page.waitForFunction((w) => Number(document.getElementById("size").dataset.resident) === w, want,
    { timeout: 30000 }).catch(() => {});
  await page.waitForSelector("#events .event", { timeout: 30000 }).catch(() => {});
  await page.waitForTimeout(400);   // the gauge's transition
  const after = await page.$eval("#size", (e) => ({ ...e.dataset, text: e.textContent }));
  const tgtAfter = await page.$eval("#tgt", (e) => e.style.left);
  check(Number(after.resident) === want && want < Number(before.resident), `size after budget ${JSON.stringify(after)} (want ${want})`);
  check(Number(after.n) < Number(before.n), `N ${before.n} -> ${after.n}`);
  check(tgtAfter !== tgtBefore && parseFloat(tgtAfter) < parseFloat(tgtBefore), `target mark ${tgtBefore} -> ${tgtAfter}`);
  check(after.text !== before.text, "size text changed");
  const ev = await page.$$eval("#events .event", (es) => es.map((e) => e.textContent));
  check(ev.length === 1 && /fixed budget 50%/.test(ev[0]), "resize events " + JSON.stringify(ev));

  const shot = path.join(logDir, "http-chat-page.png");
  await page.screenshot({ path: shot });
  console.log("screenshot: " + shot);
  check(fs.statSync(shot).size > 1000, "screenshot written");
  check(foreign.length === 0, "requests to elsewhere: " + JSON.stringify(foreign));
  check(errors.length === 0, "page errors: " + JSON.stringify(errors));
} catch (e) {
  console.error(e);
  check(false, "unexpected exception: " + e.message);
} finally {
  check(await d.stop(), "bitstackd exits 0 on SIGTERM");
}

// two models (the same store twice, under two names, t held at half its size)
const d2 = await startDaemon("chat_page_two", (store) => ["--store", "t=" + store]);
try {
  const b = await request(d2.sock, "POST", "/v1/bitstack/budget", { model: "t", budget: "50%" });
  check(b.status === 200, "budget of t " + b.status + " " + b.body);
  const page = await browser.newPage({ viewport: { width: 900, height: 560 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(d2.base + "/");
  await page.waitForFunction(() => document.getElementById("model").options.length === 2, null, { timeout: 30000 });
  const names = await page.$$eval("#model option", (os) => os.map((o) => o.value));
  check(JSON.stringify(names) === JSON.stringify(["s", "t"]), "models listed: " + JSON.stringify(names));
  await page.waitForFunction(() => document.getElementById("size").dataset.n !== undefined, null, { timeout: 30000 });
  const nS = Number(await page.$eval("#size", (e) => e.dataset.n));
  await page.selectOption("#model", "t");
  await page.waitForFunction((n) => Number(document.getElementById("size").dataset.n) < n, nS, { timeout: 30000 })
    .catch(() => {});
  const nT = Number(await page.$eval("#size", (e) => e.dataset.n));
  check(nT < nS, `the meter follows t: N ${nS} (s) -> ${nT} (t)`);
  await page.fill("#input", "Once upon a time");
  await page.click("#send");
  await page.waitForFunction(() => {
    const a = document.querySelector(".msg.assistant");
    return a && (a.dataset.state === "done" || a.dataset.state === "error");
  }, null, { timeout: 60000 });
  check(await page.$eval(".msg.assistant", (e) => e.dataset.state) === "done", "reply from t");
  const st = JSON.parse((await request(d2.sock, "GET", "/v1/bitstack/status")).body);
  const t = st.models.find((m) => m.name === "t"), s = st.models.find((m) => m.name === "s");
  check(t && t.requests === 1 && s && s.requests === 0, "the request went to t: " + JSON.stringify(st.models.map((m) => [m.name, m.requests])));
  check(errors.length === 0, "page errors (two models): " + JSON.stringify(errors));
} catch (e) {
  console.error(e);
  check(false, "unexpected exception (two models): " + e.message);
} finally {
  if (browser) await browser.close();
  check(await d2.stop(), "bitstackd (two models) exits 0 on SIGTERM");
}
if (!summary()) fail("chat page test failed");
console.log("chat page test passed");
