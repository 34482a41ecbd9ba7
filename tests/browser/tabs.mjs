// Drives browser workers for the end-to-end tests: opens tabs of headless
// Chromium on Shoal's worker page, reports every status they post as one
// JSON line on stdout, and takes commands on stdin, one per line:
//   open URL        open a new tab (in its own browser context) on URL
//   close N         close tab N (as a user closing it: no goodbye is awaited)
//   closepage N     close tab N's page but keep its browser context (its
//                   storage), as closing one tab of a browser
//   openin N URL    open a new tab in tab N's browser context (the same
//                   browser profile: its IndexedDB, localStorage) on URL
//   click N SEL     click the element SEL (a CSS selector; open shadow
//                   roots are searched) in tab N
//   eval N JS       evaluate JS in tab N; prints {"tab":N,"eval":result}
//   screenshot N P  save a PNG of tab N's whole page to path P
//   viewport N W H  resize tab N's viewport
//   metrics N       Chromium's performance counters of tab N (CDP
//                   Performance.getMetrics: TaskDuration is CPU seconds)
//   quit            close everything and exit
// Needs NODE_PATH to hold playwright-core; Chromium from $SHOAL_CHROMIUM or
// /usr/bin/chromium (flags of shared/TOOLCHAIN.md, WebGPU on; Playwright
// gives each launch a fresh temporary profile), plus the flags of
// $SHOAL_CHROMIUM_ARGS (a JSON array: host resolver rules, a trusted key).
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const say = obj => process.stdout.write(JSON.stringify(obj) + '\n');
const browser = await chromium.launch({
  executablePath: process.env.SHOAL_CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--disable-quic', '--enable-unsafe-webgpu',
    ...JSON.parse(process.env.SHOAL_CHROMIUM_ARGS ?? '[]'),
  ],
});
const tabs = [];

async function open(url, context) {
  const n = tabs.length;
  context ??= await browser.newContext();
  const page = await context.newPage();
  tabs.push({ context, page });
  page.on('console', msg => {
    const text = msg.text();
    if (text.startsWith('shoal-status ')) {
      say({ tab: n, status: JSON.parse(text.slice('shoal-status '.length)) });
    } else if (msg.type() === 'error' || msg.type() === 'warning') {
      say({ tab: n, console: text });
    }
  });
  page.on('pageerror', e => say({ tab: n, error: String(e) }));
  await page.goto(url);
  say({ tab: n, opened: url });
}

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  const [cmd, arg, ...rest] = line.trim().split(' ');
  try {
    if (cmd === 'open') await open(arg);
    else if (cmd === 'openin') await open(rest[0], tabs[Number(arg)].context);
    else if (cmd === 'closepage') {
      await tabs[Number(arg)].page.close({ runBeforeUnload: true });
      say({ tab: Number(arg), closed: true });
    } else if (cmd === 'click') {
      await tabs[Number(arg)].page.locator(rest.join(' ')).click({ timeout: 20000 });
      say({ tab: Number(arg), clicked: rest.join(' ') });
    }
    else if (cmd === 'close') {
      await tabs[Number(arg)].context.close();
      say({ tab: Number(arg), closed: true });
    } else if (cmd === 'eval') {
      const result = await tabs[Number(arg)].page.evaluate(rest.join(' '));
      say({ tab: Number(arg), eval: result ?? null });
    } else if (cmd === 'screenshot') {
      await tabs[Number(arg)].page.screenshot({ path: rest[0], fullPage: true });
      say({ tab: Number(arg), screenshot: rest[0] });
    } else if (cmd === 'viewport') {
      await tabs[Number(arg)].page.setViewportSize({ width: Number(rest[0]), height: Number(rest[1]) });
      say({ tab: Number(arg), viewport: [Number(rest[0]), Number(rest[1])] });
    } else if (cmd === 'metrics') {
      const t = tabs[Number(arg)];
      t.cdp ??= await t.context.newCDPSession(t.page);
      await t.cdp.send('Performance.enable');
      const { metrics } = await t.cdp.send('Performance.getMetrics');
      say({ tab: Number(arg), metrics: Object.fromEntries(metrics.map(m => [m.name, m.value])) });
    } else if (cmd === 'quit') break;
    else if (cmd) say({ error: `unknown command ${cmd}` });
  } catch (e) {
    say({ error: `${line}: ${e}` });
  }
}
await browser.close();
say({ quit: true });
