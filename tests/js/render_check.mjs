// Renders every input schema in rjsf and JSON Forms in headless Chromium, with and without our UI
// schemas, and submits each example. Usage: node render_check.mjs <input.json> <outdir>
// input: {"vocabulary": ..., "forms": [{key, title, schema, ui: {rjsf, jsonforms}, example}], "screenshots": [[key, renderer, withUi]]}
// stdout: {"results": [{key, renderer, withUi, unsupported, noRenderer, errors}], "console": [...], "screenshots": [...]}
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const [inputPath, outDir] = process.argv.slice(2);
const input = JSON.parse(readFileSync(inputPath, "utf8"));
mkdirSync(outDir, { recursive: true });

await build({
  entryPoints: [join(here, "render", "app.jsx")],
  bundle: true,
  outfile: join(outDir, "app.js"),
  format: "iife",
  jsx: "automatic",
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "error",
});
const css = readFileSync(join(here, "render", "page.css"), "utf8");
writeFileSync(
  join(outDir, "index.html"),
  `<!doctype html><html><head><meta charset="utf-8"><style>${css}</style></head><body><div id="form"></div>` +
    `<script src="vocabulary.js"></script><script src="app.js"></script></body></html>`,
);
writeFileSync(join(outDir, "vocabulary.js"), `window.VOCABULARY = ${JSON.stringify(input.vocabulary)};`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run"],
});
const consoleErrors = [];
try {
  const page = await browser.newPage({ viewport: { width: 800, height: 900 } });
  page.on("console", (msg) => {
    if (msg.type() === "error" || msg.type() === "warning") consoleErrors.push(`${msg.type()}: ${msg.text()}`);
  });
  page.on("pageerror", (error) => consoleErrors.push(`pageerror: ${error.message}`));
  await page.goto(pathToFileURL(resolve(outDir, "index.html")).href);
  await page.waitForFunction(() => window.ready === true);
  const wanted = new Set((input.screenshots || []).map((s) => s.join("|")));
  const results = [];
  const shots = [];
  for (const form of input.forms) {
    for (const renderer of ["rjsf", "jsonforms"]) {
      for (const withUi of [false, true]) {
        const before = consoleErrors.length;
        const uiSchema = withUi ? form.ui[renderer] : undefined;
        const args = { renderer, schema: form.schema, uiSchema, title: form.title };
        const empty = await page.evaluate((a) => window.renderForm(a), args);
        const filled = await page.evaluate((a) => window.renderForm(a), { ...args, data: form.example });
        const name = [form.key, renderer, withUi].join("|");
        if (wanted.has(name)) {
          await page.evaluate((a) => window.renderForm(a), { ...args, data: form.showcase || form.example });
          const file = join(outDir, `${form.key}.${renderer}${withUi ? ".ui" : ""}.png`);
          await page.locator("#form").screenshot({ path: file });
          shots.push(file);
        }
        results.push({
          key: form.key, renderer, withUi,
          unsupported: empty.unsupported + filled.unsupported,
          noRenderer: empty.noRenderer + filled.noRenderer,
          errors: filled.errors,
          console: consoleErrors.slice(before),
        });
      }
    }
  }
  process.stdout.write(JSON.stringify({ results, console: consoleErrors, screenshots: shots }));
} finally {
  await browser.close();
}
