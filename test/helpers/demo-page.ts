import type { Page } from 'playwright-core';

/** One push as the demo page shows it (`#pushes li.push`). */
export interface ShownPush {
  /** The message id (the item's title attribute). */
  id: string;
  /** The item's class: `live` or `replay`. */
  kind: string;
  /** The mark's text: `live` or `replayed`. */
  mark: string;
  /** The time shown, and its `datetime` attribute (ISO). */
  time: string;
  datetime: string;
  /** A structured push: its title and body (null when it has none); a text push: null. */
  title: string | null;
  body: string | null;
  /** A text push's text (null for a structured one). */
  text: string | null;
  /** A structured push's raw JSON as the page shows it (in a <details>), parsed; null for text. */
  raw: unknown;
}

/** The pushes the demo page lists, in order. */
export async function shownPushes(page: Page): Promise<ShownPush[]> {
  const items = await page.locator('#pushes li.push').evaluateAll((els) =>
    els.map((li) => {
      const text = (sel: string): string | null => li.querySelector(sel)?.textContent ?? null;
      return {
        id: li.getAttribute('title') ?? '',
        kind: ['live', 'replay'].find((c) => li.classList.contains(c)) ?? '',
        mark: text('.mark') ?? '',
        time: text('time') ?? '',
        datetime: li.querySelector('time')?.getAttribute('datetime') ?? '',
        title: text('.title'),
        body: text('.body'),
        text: text('.text'),
        rawText: text('.raw'),
      };
    }),
  );
  return items.map(({ rawText, ...p }) => ({ ...p, raw: rawText === null ? null : (JSON.parse(rawText) as unknown) }));
}

/** What each listed push carried: the parsed JSON of a structured push, the text of a text push. */
export async function shownValues(page: Page): Promise<unknown[]> {
  return (await shownPushes(page)).map((p) => (p.text !== null ? p.text : p.raw));
}
