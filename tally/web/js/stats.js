// Usage statistics: tokens over time (uPlot, in the viewer's time zone), the breakdown by
// model, cost by action and the total, from `organization.usageStats`.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { graphql } from "./api.js";
import { compactNumber, element } from "./dom.js";

const STATS = `
  query Stats($organizationId: ID, $from: DateTime!, $to: DateTime!, $granularity: Granularity!, $timezone: String!) {
    organization(id: $organizationId) {
      usageStats(from: $from, to: $to, granularity: $granularity, timezone: $timezone) {
        timezone totalTokens totalCost { formatted }
        tokensOverTime { start tokens cost { formatted } }
        byModel { key tokens share priced cost { formatted } }
        byAction { key tokens share priced cost { formatted } }
        unpricedModels
      }
    }
  }
`;

/** The viewer's IANA time zone ("UTC" when the browser does not say). */
export function viewerTimeZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

/** The statistics view inside the stats dialog. */
export class StatsView {
  constructor(dialog, organizationId) {
    this.dialog = dialog;
    this.organizationId = organizationId;
    this.range = dialog.querySelector("#stats-range");
    this.granularity = dialog.querySelector("#stats-granularity");
    this.chartTarget = dialog.querySelector("#tokens-chart");
    this.chart = null;
    this.timezone = viewerTimeZone();
    this.range.addEventListener("change", () => this.load());
    this.granularity.addEventListener("change", () => this.load());
    dialog.querySelector("#stats-controls").addEventListener("submit", (event) => event.preventDefault());
  }

  /** Fetches and draws the statistics for the chosen range and granularity. */
  async load() {
    const days = Number(this.range.value);
    const to = new Date();
    to.setMinutes(0, 0, 0);
    to.setHours(to.getHours() + 1);
    const from = new Date(to.getTime() - days * 24 * 3600 * 1000);
    const error = this.dialog.querySelector("#stats-error");
    error.textContent = "";
    this.dialog.setAttribute("aria-busy", "true");
    try {
      let stats;
      try {
        stats = await this.fetch(from, to, this.timezone);
      } catch (failure) {
        if (this.timezone === "UTC" || !/time ?zone/i.test(failure.message)) throw failure;
        this.timezone = "UTC";
        stats = await this.fetch(from, to, this.timezone);
      }
      this.render(stats);
      // What was plotted: the query's bounds, so a reader can ask the API the same.
      Object.assign(this.chartTarget.dataset, {
        from: from.toISOString(),
        to: to.toISOString(),
        granularity: this.granularity.value,
        timezone: this.timezone,
      });
    } catch (failure) {
      error.textContent = failure.message;
    } finally {
      this.dialog.removeAttribute("aria-busy");
    }
  }

  async fetch(from, to, timezone) {
    const data = await graphql(STATS, {
      organizationId: this.organizationId,
      from: from.toISOString(),
      to: to.toISOString(),
      granularity: this.granularity.value,
      timezone,
    });
    return data.organization.usageStats;
  }

  render(stats) {
    this.dialog.querySelector("#stats-timezone").textContent = `Times in ${stats.timezone}`;
    this.dialog.querySelector("#stats-total").textContent =
      `Total: ${compactNumber(stats.totalTokens)} tokens, ${stats.totalCost.formatted}` +
      (stats.unpricedModels.length ? ` (not priced: ${stats.unpricedModels.join(", ")})` : "");
    const xs = stats.tokensOverTime.map((point) => Date.parse(point.start) / 1000);
    const ys = stats.tokensOverTime.map((point) => Number(point.tokens));
    this.drawChart([xs, ys]);
    this.chartTarget.setAttribute(
      "aria-label",
      `Tokens over time: ${ys.length} points, ${compactNumber(stats.totalTokens)} tokens in all`,
    );
    renderBars(this.dialog.querySelector("#by-model"), stats.byModel, (share) =>
      `${compactNumber(share.tokens)} tokens · ${share.cost.formatted}`,
    );
    renderBars(this.dialog.querySelector("#by-action"), stats.byAction, (share) =>
      `${share.cost.formatted} · ${compactNumber(share.tokens)} tokens`,
    );
  }

  drawChart(data) {
    const width = Math.max(this.chartTarget.clientWidth, 280);
    if (this.chart) {
      this.chart.destroy();
    }
    this.chart = new uPlot(
      {
        width,
        height: 240,
        scales: { x: { time: true } },
        series: [
          {},
          { label: "Tokens", stroke: "#4f46e5", fill: "rgba(79, 70, 229, 0.15)", width: 2, value: (_, v) => (v == null ? "–" : compactNumber(v)) },
        ],
        axes: [{}, { values: (_, ticks) => ticks.map((tick) => compactNumber(tick)), size: 60 }],
      },
      data,
      this.chartTarget,
    );
    // Tests and assistive tooling read the plotted points from here.
    this.chartTarget.uplot = this.chart;
  }
}

function renderBars(list, shares, describe) {
  list.replaceChildren();
  if (shares.length === 0) {
    list.append(element("li", { className: "muted" }, "No usage in this range."));
    return;
  }
  for (const share of shares) {
    const bar = element("span", { className: "bar-fill" });
    bar.style.width = `${Math.max(0, Math.min(100, share.share * 100)).toFixed(1)}%`;
    list.append(
      element(
        "li",
        { dataset: { key: share.key, tokens: String(share.tokens) } },
        element("span", { className: "bar-label" }, share.key),
        element("span", { className: "bar-track", ariaHidden: "true" }, bar),
        element("span", { className: "bar-value" }, `${describe(share)} (${(share.share * 100).toFixed(1)}%)`),
      ),
    );
  }
}
