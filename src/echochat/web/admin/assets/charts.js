// @ts-check
/**
 * Bar charts drawn in the page as SVG (no chart library, nothing from another origin). The
 * geometry comes from state.js `barChart`; this only makes the elements. Colours and fonts
 * are in panel.css (classes, no style attributes: the CSP forbids those).
 */

import { barChart } from "./state.js";

const SVG = "http://www.w3.org/2000/svg";

/**
 * @param {string} tag
 * @param {Record<string, string | number>} attrs
 * @param {string} [text]
 */
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    node.setAttribute(name, String(value));
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/**
 * A bar chart of a day series, with a title for screen readers and a tooltip per bar. Drawn
 * in user units equal to CSS pixels at `width` x `height`, so its text has the panel's size.
 * @param {import("./state.js").DayCount[]} series
 * @param {string} label e.g. "Messages per day"
 * @param {number} [WIDTH] the width it is shown at
 * @param {number} [HEIGHT]
 * @returns {SVGSVGElement}
 */
export function renderBarChart(series, label, WIDTH = 320, HEIGHT = 140) {
  const chart = barChart(series, { width: WIDTH, height: HEIGHT });
  const total = series.reduce((sum, d) => sum + d.count, 0);
  const root = /** @type {SVGSVGElement} */ (
    svg("svg", {
      class: "admin-svg",
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      role: "img",
      "aria-label": `${label}: ${total} over ${series.length} days`,
    })
  );
  for (const tick of chart.ticks) {
    root.append(
      svg("line", { class: "admin-svg__grid", x1: 32, x2: WIDTH - 4, y1: tick.y, y2: tick.y }),
      svg(
        "text",
        { class: "admin-svg__axis", x: 28, y: tick.y + 3, "text-anchor": "end" },
        String(tick.value),
      ),
    );
  }
  for (const bar of chart.bars) {
    const rect = svg("rect", {
      class: "admin-svg__bar",
      x: bar.x.toFixed(1),
      y: bar.y.toFixed(1),
      width: bar.w.toFixed(1),
      height: Math.max(bar.count ? 1 : 0, bar.h).toFixed(1),
      rx: 1.5,
    });
    rect.append(svg("title", {}, `${bar.day}: ${bar.count}`));
    root.append(rect);
  }
  for (const day of chart.labels) {
    // The last label would spill over the right edge: it ends there instead.
    const edge = day.x > WIDTH - 24;
    root.append(
      svg(
        "text",
        {
          class: "admin-svg__axis",
          x: edge ? WIDTH - 1 : day.x.toFixed(1),
          y: HEIGHT - 4,
          "text-anchor": edge ? "end" : "middle",
        },
        day.text,
      ),
    );
  }
  if (!series.length) {
    root.append(
      svg(
        "text",
        { class: "admin-svg__empty", x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle" },
        "No data yet",
      ),
    );
  }
  return root;
}
