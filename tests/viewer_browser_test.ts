/**
 * End-to-end tests of the viewer page in a real browser: Debian's `chromium` driven headless by
 * `playwright-core`, over a viewer serving the store that the real demo analysis fills (the
 * bundled demo configuration, with DLA); the XSS test uses the synthetic store of `fillStore()`
 * (tests/_viewer_utils.ts), which holds tokens that are HTML and JS. Expectations about features
 * are read through the API.
 *
 * Without a Chromium (`CHROMIUM_PATH`, else `chromium` or `chromium-browser` on `PATH`) both tests
 * are skipped with a `SKIPPED:` line naming what to install; `REQUIRE_BROWSER=1` (set by `.ci/run`)
 * makes them fail instead. Set `KEEP_VIEWER_TMP=1` to keep the temporary folder with the
 * screenshots.
 *
 * @module
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { browserIgnored, requireChromium } from "./_utils.ts";
import { withDemoViewer, withViewer, XSS_IMG, XSS_SCRIPT } from "./_viewer_utils.ts";

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Opens chromium with a fresh profile under `dir`, runs `fn` with a page, always closes it. */
async function withPage<T>(
  dir: string,
  options: { bypassCSP?: boolean },
  fn: (page: Page, errors: string[]) => Promise<T>,
): Promise<T> {
  const profile = await Deno.makeTempDir({ dir, prefix: "profile_" });
  const context: BrowserContext = await chromium.launchPersistentContext(profile, {
    executablePath: requireChromium(),
    headless: true,
    args: ARGS,
    viewport: { width: 1400, height: 1000 },
    bypassCSP: options.bypassCSP ?? false,
  });
  try {
    const page = context.pages()[0] ?? await context.newPage();
    page.setDefaultTimeout(8000);
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(`console: ${m.text()}`);
    });
    return await fn(page, errors);
  } finally {
    await context.close();
  }
}

/** How the page shows a token (app.js `tokenText`). */
function tokenText(s: string): string {
  return s === "" ? "∅" : s.replace(/\r?\n/g, "↵").replace(/\t/g, "⇥");
}

/** How the page formats an activation in the tooltip (app.js `fmtNum(x, 4)`). */
function fmt4(x: number): string {
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e5 || a < 1e-3) return x.toExponential(3);
  if (a >= 100) return x.toFixed(1);
  return Number(x.toPrecision(4)).toString();
}

async function assertPng(path: string) {
  const bytes = await Deno.readFile(path);
  assertEquals([...bytes.slice(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert(bytes.length > 10_000, `screenshot ${path} is only ${bytes.length} bytes`);
}

const PAGE_TEST =
  "the page shows the overview, a feature with shaded contexts, and navigates between features";
Deno.test({
  name: PAGE_TEST,
  ignore: browserIgnored(PAGE_TEST),
  fn: () => {
    requireChromium(); // the browser first: without it, fail before the demo analysis runs
    return withDemoViewer(({ server, fixture, dir }) =>
      withPage(dir, {}, async (page, errors) => {
        const api = async (path: string) => {
          const res = await fetch(`${server.url}${path}`);
          assertEquals(res.status, 200, path);
          return await res.json();
        };
        const sae = `/sae/${encodeURIComponent(fixture.series)}/${
          encodeURIComponent(fixture.name)
        }`;
        const apiBase = `/api/saes/${encodeURIComponent(fixture.series)}/${
          encodeURIComponent(fixture.name)
        }`;
        const info = await api(apiBase);

        // Overview: counts, the frequency histogram and the list, most frequent first.
        await page.goto(`${server.url}${sae}`);
        await page.locator("table.features tbody tr").first().waitFor();
        assertEquals(await page.locator("h1").textContent(), fixture.name);
        assertEquals(fixture.name, "demo-sae");
        const alive = page.locator(".card", { hasText: "Alive" }).locator(".value");
        assertEquals(await alive.textContent(), info.counts.alive.toLocaleString("en-US"));
        assert((await page.locator("svg.chart rect").count()) > 0, "no frequency bars");
        await page.screenshot({ path: join(dir, "overview.png"), fullPage: true });
        await assertPng(join(dir, "overview.png"));

        // The list answers its controls: dead features only.
        await page.selectOption("select[name=alive]", "false");
        await page.waitForURL(/alive=false/);
        await page.locator("table.features tbody tr.dead").first().waitFor();
        const deadRows = await page.locator("table.features tbody tr").count();
        assertEquals(deadRows, info.counts.dead);
        await page.selectOption("select[name=alive]", "all");
        await page.locator("table.features tbody tr:not(.dead)").first().waitFor();

        // Click into the most frequent feature.
        const top = (await api(`${apiBase}/features?sort=act_times&limit=1`)).features[0];
        await page.locator("table.features tbody tr").first().locator("a").click();
        await page.waitForURL(`${server.url}${sae}/feature/${top.index}`);
        await page.locator(".sampling .ctx").first().waitFor();
        assertEquals(await page.locator("h1").textContent(), `Feature ${top.index}`);

        // The top context shows the tokens around the peak, shaded by activation.
        const feature = await api(`${apiBase}/features/${top.index}`);
        const sample = feature.analyses[info.analysis].samplings[0].samples[0];
        const from = Math.max(0, sample.peak_pos - 12);
        const to = Math.min(sample.tokens.length, sample.peak_pos + 13);
        const expected = sample.token_strings.slice(from, to).map(tokenText).join("");
        const firstCtx = page.locator(".sampling").first().locator(".ctx").first();
        const shown = (await firstCtx.locator(".toks").textContent())!.replaceAll("…", "");
        assertEquals(shown, expected);
        const peak = firstCtx.locator(".tok.peak");
        assertEquals(Number(await peak.getAttribute("data-act")), sample.acts[sample.peak_pos]);
        const bg = await peak.evaluate((el) =>
          // deno-lint-ignore no-explicit-any
          (globalThis as any).getComputedStyle(el).backgroundColor as string
        );
        assert(/^rgba?\(242, 140, 40/.test(bg), `peak token background ${bg}`);
        await peak.hover();
        const tip = page.locator("#tip");
        await tip.waitFor({ state: "visible" });
        const tipText = (await tip.textContent())!;
        assert(tipText.includes(`activation ${fmt4(sample.acts[sample.peak_pos])}`), tipText);
        assert(tipText.includes(JSON.stringify(sample.token_strings[sample.peak_pos])), tipText);

        // Statistics, logits and the explanation are there.
        const stats = (await page.locator("#stats").textContent())!;
        assert(stats.includes(top.act_times.toLocaleString("en-US")), stats);
        if (feature.logits) {
          const logits = (await page.locator("#logits").textContent())!;
          assert(logits.includes(tokenText(feature.logits.top_positive[0].token)), logits);
        }
        if (feature.interpretation) {
          assertEquals(
            await page.locator("#explanation").textContent(),
            feature.interpretation.text,
          );
        }
        await page.screenshot({ path: join(dir, "feature.png"), fullPage: true });
        await assertPng(join(dir, "feature.png"));

        // Fewer tokens around the peak.
        await page.selectOption("#radius", "4");
        const few = await page.locator(".sampling").first().locator(".ctx").first().locator(".tok")
          .count();
        assertEquals(
          few,
          Math.min(sample.tokens.length, sample.peak_pos + 5) - Math.max(0, sample.peak_pos - 4),
        );

        // Next and previous, and the URL is the feature's own.
        const i = top.index;
        if (i + 1 < info.sae.d_sae) {
          await page.click("#next");
          await page.waitForURL(`${server.url}${sae}/feature/${i + 1}`);
          await page.locator("h1", { hasText: `Feature ${i + 1}` }).waitFor();
          await page.click("#prev");
        } else {
          await page.click("#prev");
          await page.waitForURL(`${server.url}${sae}/feature/${i - 1}`);
          await page.locator("h1", { hasText: `Feature ${i - 1}` }).waitFor();
          await page.click("#next");
        }
        await page.waitForURL(`${server.url}${sae}/feature/${i}`);
        await page.locator("h1", { hasText: `Feature ${i}` }).waitFor();
        await page.locator(".sampling .ctx").first().waitFor();

        // A shared URL opens the feature directly; Random lands on an alive feature.
        await page.goto(`${server.url}${sae}/feature/${fixture.deadIndex}`);
        await page.locator(".dead-note").waitFor();
        await page.click("#random");
        await page.waitForURL((url) => !url.pathname.endsWith(`/feature/${fixture.deadIndex}`));
        await page.locator(".sampling .ctx").first().waitFor();
        // A neighbour that is not in the store answers 404, which the browser logs; nothing else.
        assertEquals(errors.filter((e) => !e.includes("status of 404")), []);
      })
    );
  },
});

const XSS_TEST = "dataset text that is HTML or JS shows literally and runs nothing";
Deno.test({
  name: XSS_TEST,
  ignore: browserIgnored(XSS_TEST),
  fn: () => {
    requireChromium();
    return withViewer(({ server, fixture, dir }) =>
      // CSP bypassed: the page itself must not turn data into markup.
      withPage(dir, { bypassCSP: true }, async (page) => {
        const sae = `/sae/${fixture.series}/${fixture.name}`;
        await page.goto(`${server.url}${sae}/feature/${fixture.xssIndex}`);
        await page.locator(".sampling .ctx").first().waitFor();
        const tokens = await page.locator(".sampling").first().locator(".ctx").first().locator(
          ".tok",
        )
          .allTextContents();
        assert(tokens.includes(XSS_SCRIPT), JSON.stringify(tokens));
        assert(tokens.includes(XSS_IMG), JSON.stringify(tokens));
        const logits = (await page.locator("#logits").textContent())!;
        assert(logits.includes(XSS_SCRIPT), logits);
        await page.locator(".tok", { hasText: XSS_IMG }).first().hover();
        assert((await page.locator("#tip").textContent())!.includes(JSON.stringify(XSS_IMG)));
        assertEquals(await page.locator("#app img, #app script, #tip img").count(), 0);
        await page.waitForTimeout(200); // give an injected onerror the chance to fire
        assertEquals(
          await page.evaluate(() => (globalThis as { __xss?: unknown }).__xss),
          undefined,
        );
        await page.screenshot({ path: join(dir, "xss.png") });
        await assertPng(join(dir, "xss.png"));
      })
    );
  },
});
