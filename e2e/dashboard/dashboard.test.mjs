// The dashboard end to end: `tangle-node dev` under payment load (faucet payments, and
// payments from an unfunded wallet that conflict), Debian's Chromium driven by
// playwright-core. The graph grows, a click opens a transaction, the charts move, a
// conflicting payment shows its reason, and the health badge turns "degraded" when every
// payment conflicts. Screenshots go to $SCREENSHOT_DIR.
//
// Environment: TANGLE_NODE, TANGLE_WALLET (the binaries), CHROMIUM (default
// /usr/bin/chromium), SCREENSHOT_DIR. Run through scripts/dashboard-e2e.sh.
//
// Every wait below is for a condition, with a generous guard that only turns a hang into a
// failure; nothing sleeps and then asserts.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

const run = promisify(execFile);
const NODE_BIN = process.env.TANGLE_NODE;
const WALLET_BIN = process.env.TANGLE_WALLET;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.SCREENSHOT_DIR || "dashboard-screenshots";
const GUARD_MS = 90_000;

let work, node, base, faucet, browser, page;
let loading = true;
let loadTask;

async function until(what, f, guard = GUARD_MS) {
  const start = Date.now();
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() - start > guard) throw new Error("gave up waiting for " + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function wallet(...args) {
  const env = { ...process.env, TANGLE_WALLET_PASSWORD: "e2e-password" };
  const { stdout } = await run(WALLET_BIN, ["--node", base, "--keystore", join(work, "ks.json"), "--json", ...args], { env });
  return JSON.parse(stdout);
}

before(async () => {
  assert.ok(NODE_BIN && WALLET_BIN, "set TANGLE_NODE and TANGLE_WALLET (scripts/dashboard-e2e.sh does)");
  mkdirSync(SHOTS, { recursive: true });
  work = mkdtempSync(join(tmpdir(), "tangle-dash-"));
  node = spawn(NODE_BIN, ["dev", "--data-dir", join(work, "node"), "--api-addr", "127.0.0.1:0",
    "--mqtt-addr", "127.0.0.1:0", "--milestone-interval-ms", "500"], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  node.stdout.on("data", (d) => { out += d; });
  const addr = await until("the node's address", () => /API\s+: http:\/\/([^/]+)\//.exec(out)?.[1]);
  faucet = await until("the faucet address", () => /faucet address : (\S+)/.exec(out)?.[1]);
  base = "http://" + addr;
  await until("the API", () => fetch(base + "/api/v1/info").then((r) => r.ok, () => false));

  // Payment load: faucet payments to a few addresses, about 20 a second, until told to stop.
  loadTask = (async () => {
    let i = 0;
    while (loading) {
      await fetch(base + "/api/v1/faucet", {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ address: faucet, amount: 1 + (i++ % 50) }),
      }).catch(() => {});
      await new Promise((r) => setTimeout(r, 50));
    }
  })();

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
  page.on("pageerror", (e) => { throw e; });
  await page.goto(base + "/");
});

after(async () => {
  loading = false;
  await loadTask?.catch(() => {});
  await browser?.close();
  if (node && node.exitCode == null) {
    node.kill("SIGINT");
    await new Promise((r) => node.once("exit", r));
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

test("the graph grows and a click opens a transaction", async () => {
  await until("40 transactions drawn", () => page.evaluate(() => window.tangleDashboard.count() >= 40));
  const before = await page.evaluate(() => window.tangleDashboard.count());
  await until("the graph to grow", () => page.evaluate((n) => window.tangleDashboard.count() > n + 10, before));
  await page.screenshot({ path: join(SHOTS, "1-tangle.png") });

  // Pause the picture (the dots move left as time passes), then click a confirmed one.
  await until("a confirmed transaction on screen", () =>
    page.evaluate(() => window.tangleDashboard.find((n) => n.status === "confirmed" && !n.milestone)));
  await page.locator("#pause").click();
  const target = await page.evaluate(() => window.tangleDashboard.find((n) => n.status === "confirmed" && !n.milestone));
  assert.ok(target, "still on screen once paused");
  const box = await page.locator("#tangle").boundingBox();
  await page.mouse.click(box.x + target.x, box.y + target.y);
  const inspect = page.locator("#inspect");
  await inspect.waitFor({ state: "visible", timeout: GUARD_MS });
  await until("the transaction's details", async () => (await page.locator("#inspect-json").textContent()).includes('"metadata"'));
  const kv = await page.locator("#inspect-kv").textContent();
  assert.match(kv, /status/);
  assert.match(kv, /ledger status/);
  const json = JSON.parse(await page.locator("#inspect-json").textContent());
  assert.ok(json.metadata.solid, "the node says the clicked transaction is solid");
  await page.screenshot({ path: join(SHOTS, "2-inspect.png") });
  await page.locator("#pause").click();
});

test("the charts move", async () => {
  const series = () => page.evaluate(() => {
    const all = [...document.querySelectorAll("#chart-tps canvas, #chart-lat canvas, #chart-tips canvas")];
    return all.length;
  });
  assert.ok((await series()) >= 3, "three uPlot charts are drawn");
  // The submitted-per-second series gets a new point every second, with load in it.
  const points = await page.evaluate(() => window.tangleDashboard.chartPoints());
  await until("new chart points", () => page.evaluate((p) => window.tangleDashboard.chartPoints() > p + 2, points));
  const submitted = await page.locator("#c-in").textContent();
  assert.ok(Number(submitted) > 0, "submitted per second shows the load: " + submitted);
  await until("a confirmation latency", async () => /\d+\.\d+ s/.test(await page.locator("#c-lat").textContent()));
});

test("a conflicting payment shows its reason, and health says degraded when all conflict", async () => {
  // Stop the faucet load: from here on every confirmed payment conflicts.
  loading = false;
  await loadTask;
  // The warning looks at the last 10 milestones: let those that applied faucet payments
  // pass first.
  const info = () => fetch(base + "/api/v1/info").then((r) => r.json());
  const stoppedAt = (await info()).confirmed_milestone;
  await until("ten milestones after the load", async () => (await info()).confirmed_milestone > stoppedAt + 11);
  await wallet("init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1");
  const sink = faucet;
  const ids = [];
  const started = Date.now();
  for (let i = 0; i < 4; i++) {
    const r = await wallet("pay", sink, "1000000");
    ids.push(r.payload_id);
  }
  console.log("# 4 wallet payments submitted in " + (Date.now() - started) + " ms");
  const li = page.locator('#payloads li[data-status="conflicting"]').first();
  await li.waitFor({ state: "visible", timeout: GUARD_MS });
  assert.match(await li.textContent(), /insufficient balance/);
  await li.click();
  await until("the conflict reason in the inspector", async () => /insufficient balance/.test(await page.locator("#inspect-kv").textContent()));
  await until("the degraded badge", async () => (await page.locator("#status").textContent()) === "degraded");
  assert.match(await page.locator("#health-reasons").textContent(), /conflicted/);
  await page.screenshot({ path: join(SHOTS, "3-conflicting.png"), fullPage: true });
  // A small copy for docs/ (docs/dashboard.jpg is one of these).
  await page.screenshot({ path: join(SHOTS, "dashboard.jpg"), type: "jpeg", quality: 60, fullPage: true });
});
