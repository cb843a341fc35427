// The console benchmark's client (run by bench/console.sh, which passes the centre in
// the environment). Sets up and logs in the first provider admin in headless Chromium,
// then measures server time per page, first contentful paint, and live-update fan-out.
import { createRequire } from "node:module";
import crypto from "node:crypto";
import fs from "node:fs";
import https from "node:https";
import path from "node:path";
import { execFileSync } from "node:child_process";

const env = (k) => { const v = process.env[k]; if (!v) { throw new Error(`${k} is not set`); } return v; };
const require = createRequire(path.join(env("DODVPN_NODETOOLS"), "node_modules", "x.js"));
const { chromium } = require("playwright-core");
const BASE = env("CONSOLE_URL");
const PASSWORD = "a long enough pass phrase";
const TABS = Number(env("TABS"));

function base32(s) {
  const A = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"; let bits = 0, buf = 0; const out = [];
  for (const c of s.replace(/=+$/, "")) { buf = (buf << 5) | A.indexOf(c); bits += 5; if (bits >= 8) { bits -= 8; out.push((buf >> bits) & 0xff); } }
  return Buffer.from(out);
}
function totp(secret) {
  const msg = Buffer.alloc(8); msg.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30000)));
  const h = crypto.createHmac("sha1", base32(secret)).update(msg).digest(); const o = h[h.length - 1] & 15;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1000000).padStart(6, "0");
}
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]; };
const round = (x) => Math.round(x * 100) / 100;
// The centre's user + system CPU time in ms (/proc/PID/stat, clock ticks of 10 ms).
function cpuMs() {
  const f = fs.readFileSync(`/proc/${env("CENTRE_PID")}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
function get(url, cookie) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = https.get(url, { agent, headers: { cookie } }, (res) => {
      let n = 0; res.on("data", (d) => { n += d.length; });
      res.on("end", () => resolve({ status: res.statusCode, bytes: n, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
    });
    req.on("error", reject);
  });
}

async function main() {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox"] });
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, locale: "en-GB" });
  const page = await ctx.newPage();
  await page.goto(`${BASE}/console/setup`);
  await page.getByLabel(/Invitation code/).fill(env("SETUP_CODE"));
  await page.getByLabel("User name", { exact: true }).fill("bench-admin");
  await page.getByLabel(/^Password \(/).fill(PASSWORD);
  await page.getByLabel("Password again").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  const secret = (await page.locator("#totp-secret").textContent()).trim();
  await page.goto(`${BASE}/console/login`);
  await page.getByLabel("User name", { exact: true }).fill("bench-admin");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Next" }).click();
  await page.getByLabel(/authenticator app/).fill(totp(secret));
  await page.getByRole("button", { name: "Log in" }).click();
  if (!page.url().endsWith("/console/")) { throw new Error(`login failed: ${page.url()}`); }
  const sc = (await ctx.cookies()).find((c) => c.name === "__Host-dodvpn-console");
  const cookie = `${sc.name}=${sc.value}`;

  const pages = [["overview", "/console/"], ["orgs", "/console/orgs"], ["devices", "/console/devices"],
    ["device", "/console/devices/dev-bench000000"], ["sessions", "/console/sessions"], ["approvals", "/console/approvals"],
    ["grants", "/console/grants"], ["policy", "/console/policy/org-bench0000"], ["audit", "/console/audit"],
    ["ledger", "/console/ledger/org-bench0000"]];
  const runs = Number(process.env.RUNS || 21);
  const server = {};
  for (const [name, p] of pages) {
    const times = []; let bytes = 0;
    for (let i = 0; i < runs; i++) {
      const r = await get(`${BASE}${p}`, cookie);
      if (r.status !== 200) { throw new Error(`${p}: HTTP ${r.status}`); }
      times.push(r.ms); bytes = r.bytes;
    }
    server[name] = { p50_ms: round(pct(times, 50)), p99_ms: round(pct(times, 99)), bytes, runs };
    console.log(`server time  ${name.padEnd(10)} p50 ${server[name].p50_ms} ms  p99 ${server[name].p99_ms} ms  (${bytes} bytes)`);
  }
  const fcp = {};
  for (const [name, p] of pages) {
    const xs = [];
    for (let i = 0; i < 5; i++) {
      await page.goto(`${BASE}${p}`, { waitUntil: "load" });
      // Paint entries may be reported after "load": wait for the buffered one.
      const v = await page.evaluate(() => new Promise((resolve) => {
        new PerformanceObserver((list) => {
          const e = list.getEntriesByName("first-contentful-paint")[0];
          if (e) { resolve(e.startTime); }
        }).observe({ type: "paint", buffered: true });
        setTimeout(() => resolve(null), 5000);
      }));
      if (v !== null) { xs.push(v); }
    }
    fcp[name] = { p50_ms: round(pct(xs, 50)), samples: xs.length };
    console.log(`first contentful paint  ${name.padEnd(10)} p50 ${fcp[name].p50_ms} ms`);
  }
  await browser.close();

  // Fan-out: TABS event streams at once, as TABS open sessions pages would hold.
  const target = "00000000000000000000000000000000";
  const streams = [];
  const fanAgent = new https.Agent({ keepAlive: true, maxSockets: TABS + 1, rejectUnauthorized: false });
  const marker = 987654321;
  let changedAt = 0;
  const arrived = [];
  await Promise.all(Array.from({ length: TABS }, () => new Promise((resolve, reject) => {
    const req = https.get(`${BASE}/console/sessions/events`, { agent: fanAgent, headers: { cookie, accept: "text/event-stream" } }, (res) => {
      let buf = ""; let first = true; let got = false;
      res.setEncoding("utf8");
      res.on("data", (d) => {
        buf += d;
        if (first && buf.includes("\n\n")) { first = false; resolve(); }
        if (!got && changedAt && buf.includes(String(marker))) { got = true; arrived.push(Date.now() - changedAt); }
        if (buf.length > 1 << 20) { buf = buf.slice(-4096); }
      });
    });
    req.on("error", reject);
    streams.push(req);
  })));
  console.log(`${TABS} event streams open`);
  const cpu0 = cpuMs();
  const sid = target.slice(0, 16) + target.slice(16);
  execFileSync("python3", ["-c", `
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], timeout=30)
con.execute("INSERT INTO session_reports (session_id, reporter, event, at, grant_ids, bytes_in, bytes_out, packets_in, packets_out, received_ms) SELECT id, device_lo, 'update', ?, grant_ids, ?, 1, 1, 1, ? FROM sessions WHERE id = ?", (int(time.time()), ${marker}, int(time.time()*1000), sys.argv[2]))
con.commit()`, env("CENTRE_DB"), sid]);
  changedAt = Date.now();
  const deadline = Date.now() + 60000;
  while (arrived.length < TABS && Date.now() < deadline) { await new Promise((r) => setTimeout(r, 50)); }
  const cpu1 = cpuMs();
  for (const s of streams) { s.destroy(); }
  const fan = arrived.length ? { tabs: TABS, delivered: arrived.length, p50_ms: pct(arrived, 50), p99_ms: pct(arrived, 99), max_ms: Math.max(...arrived),
    centre_cpu_ms_while_waiting: cpu1 - cpu0 } : { tabs: TABS, delivered: 0 };
  console.log(`fan-out to ${TABS} tabs: ${JSON.stringify(fan)}`);
  const result = { commit: env("BENCH_COMMIT"), build: env("BENCH_BUILD"), devices: Number(env("BENCH_DEVICES")), sessions: Number(env("BENCH_SESSIONS")),
    when: new Date().toISOString(), server_time: server, first_contentful_paint: fcp, fan_out: fan,
    note: "server time is measured by the client over one keep-alive TLS connection on loopback (time to the last byte); the machine is a shared 2-core VM" };
  fs.writeFileSync(env("BENCH_OUT"), JSON.stringify(result, null, 2));
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
