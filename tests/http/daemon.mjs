// Shared by the Node tests of the HTTP front end: a temp folder, a stories260K store made
// by `bitstackctl compress`, the real bitstackd on a Unix socket in that folder and on a
// loopback TCP port, and small checks. Arguments (meson passes them):
//   node TEST.mjs BITSTACKD BITSTACKCTL SHARED_DIR [LOG_DIR]
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import http from "node:http";

export function fail(msg) {
  console.error("FAIL: " + msg);
  process.exitCode = 1;
  throw new Error(msg);
}

let checks = 0, failed = 0;
export function check(cond, what) {
  checks++;
  if (!cond) {
    failed++;
    console.error("CHECK failed: " + what);
  }
}
export function summary() {
  console.error(`${checks} checks, ${failed} failed`);
  if (failed) process.exitCode = 1;
  return failed === 0;
}

// An npm package of tests/http, with a clear word when `npm ci` was not run.
export async function need(pkg) {
  try {
    return await import(pkg);
  } catch (e) {
    fail(`cannot load the npm package '${pkg}' (${e.code || e.message}): run 'npm ci' in tests/http ` +
         `(.ci/run does; Node.js and npm come from scripts/install-deps.sh)`);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

// GET/POST over the Unix socket (or TCP when opts.port is set): {status, headers, body}.
export function request(sock, method, url, body, opts = {}) {
  return new Promise((resolve, reject) => {
    const headers = { ...(opts.headers || {}) };
    if (body !== undefined && !headers["Content-Type"]) headers["Content-Type"] = "application/json";
    const req = http.request(
      opts.port ? { host: "127.0.0.1", port: opts.port, method, path: url, headers }
                : { socketPath: sock, method, path: url, headers },
      (res) => {
        let data = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (data += c));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
      });
    req.on("error", reject);
    req.setTimeout(60000, () => req.destroy(new Error("timeout")));
    if (body !== undefined) req.write(typeof body === "string" ? body : JSON.stringify(body));
    req.end();
  });
}

// One Prometheus sample from /metrics, or NaN.
export async function metric(sock, name) {
  const r = await request(sock, "GET", "/metrics");
  const m = r.body.match(new RegExp("^" + name + " (\\S+)$", "m"));
  return m ? Number(m[1]) : NaN;
}

export async function status(sock) {
  return JSON.parse((await request(sock, "GET", "/v1/bitstack/status")).body);
}

// Polls until pred(status) holds (up to ms); the last status seen.
export async function waitStatus(sock, pred, ms = 30000) {
  const end = Date.now() + ms;
  let s;
  while (Date.now() < end) {
    s = await status(sock);
    if (pred(s)) return s;
    await sleep(50);
  }
  return s;
}

export async function startDaemon(name, extra = []) {
  const [daemon, ctl, shared] = process.argv.slice(2);
  if (!daemon || !ctl || !shared) fail("usage: node TEST.mjs BITSTACKD BITSTACKCTL SHARED_DIR [LOG_DIR]");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bsh-"));
  const store = path.join(dir, "s.bstk");
  const c = spawnSync(ctl, ["compress", "--model", `${shared}/models/stories260K.bin`, "--tokenizer",
    `${shared}/models/tok512.bin`, "--calib", `${shared}/data/tinystories_train_head.txt`, "--out", store,
    "--calib-windows", "8", "--ctx", "64", "--quiet"], { encoding: "utf8" });
  if (c.status !== 0) fail("bitstackctl compress failed: " + c.stdout + c.stderr);
  const sock = path.join(dir, "d.sock");
  const logPath = path.join(dir, name + ".log");
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const log = fs.openSync(logPath, "w");
    // extra: more options, or a function of the store's path that gives them
    const more = typeof extra === "function" ? extra(store) : extra;
    const child = spawn(daemon, ["--store", store, "--socket", sock, "--listen", `127.0.0.1:${port}`, ...more],
      { stdio: ["ignore", log, log] });
    fs.closeSync(log);
    let exited = null;
    child.on("exit", (code, sig) => (exited = { code, sig }));
    const end = Date.now() + 60000;
    while (Date.now() < end && !exited) {
      try {
        const r = await request(sock, "GET", "/health");
        if (r.status === 200) {
          const d = {
            dir, sock, port, store, child, logPath, base: `http://127.0.0.1:${port}`,
            exited: () => exited,
            async stop() {
              if (!exited) child.kill("SIGTERM");
              const until = Date.now() + 60000;
              while (!exited && Date.now() < until) await sleep(20);
              if (!exited) { child.kill("SIGKILL"); fail("bitstackd did not stop on SIGTERM"); }
              const ok = exited.code === 0;
              if (!ok) console.error(`bitstackd exited with ${JSON.stringify(exited)}:\n` + fs.readFileSync(logPath, "utf8"));
              else fs.rmSync(dir, { recursive: true, force: true });
              return ok;
            },
          };
          process.on("exit", () => { if (!exited) child.kill("SIGKILL"); });
          return d;
        }
      } catch { /* not up yet */ }
      await sleep(20);
    }
    const text = fs.readFileSync(logPath, "utf8");
    if (!exited) child.kill("SIGKILL");
    if (!/address already in use/i.test(text)) fail("bitstackd did not come up:\n" + text);
  }
  fail("no free TCP port for bitstackd");
}
