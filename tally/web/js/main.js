// The Organization page: a reference client of Tally's public GraphQL API.

import { ApiError, graphql, idempotencyKey } from "./api.js";
import { openDialog, setUpDialogs } from "./dialogs.js";
import { element, formatDate, ordinal, wholeAmount } from "./dom.js";
import { liveUsageAvailable, USAGE_FIELDS, watchUsage } from "./live.js";
import { adoptKeyFromFragment, currentKey, signIn, signOut } from "./session.js";
import { StatsView } from "./stats.js";

const PAGE = `
  query Page {
    organization {
      id name
      plan { id name priceMonthly { formatted } limits { resource policy } }
      subscription {
        status resetsOn currentPeriodStart currentPeriodEnd trialEndsOn cancelAtPeriodEnd usageSuspended
        pendingPlan { id name }
        paymentIssue { pastDueSince usageStopsAt message }
      }
      usage { ${USAGE_FIELDS} }
      invoices(first: 10) { nodes { id number date kind status amount { formatted } pdfUrl hostedUrl } }
      topUps { id name resource amount price { formatted } }
      spendCap { cap { formatted } spent { formatted } }
    }
  }
`;

const RECOMMENDATIONS = `
  query Plans {
    organization {
      planRecommendations {
        current fits recommended
        plan { id name priceMonthly { formatted } }
        reasons { message fits }
      }
    }
    plans { id name priceMonthly { formatted } }
  }
`;

const PLAN_FIELDS = "id name priceMonthly { formatted }";
const MONEY = "formatted";

const PREVIEW = `
  mutation Preview($planId: ID!) {
    previewPlanChange(planId: $planId) {
      __typename
      ... on PlanChangePreview {
        timing effectiveAt allowed warnings
        currentPlan { ${PLAN_FIELDS} } newPlan { ${PLAN_FIELDS} }
        credit { ${MONEY} } charge { ${MONEY} } amountDueNow { ${MONEY} } carriedCredit { amountMinor ${MONEY} }
        resources { resource label used currentLimit newLimit fits }
        blockers { resource message }
      }
      ... on Error { message }
    }
  }
`;

const CHANGE_PLAN = `
  mutation ChangePlan($planId: ID!, $idempotencyKey: String!) {
    changePlan(planId: $planId, idempotencyKey: $idempotencyKey) {
      __typename
      ... on PlanChanged { effectiveAt invoice { number } subscription { pendingPlan { name } } }
      ... on PlanChangeBlockedError { message blockers { message } }
      ... on Error { message }
    }
  }
`;

const CANCEL_SCHEDULED = `
  mutation { cancelScheduledChange { __typename ... on Error { message } } }
`;

const SETTINGS_FIELDS = [
  ["legalName", "Legal name", "text", "organization"],
  ["billingEmail", "Billing email", "email", "email"],
  ["addressLine1", "Address", "text", "address-line1"],
  ["addressLine2", "Address (line 2)", "text", "address-line2"],
  ["postalCode", "Postal code", "text", "postal-code"],
  ["city", "City", "text", "address-level2"],
  ["country", "Country (ISO code, e.g. FR)", "text", "country"],
  ["vatId", "VAT ID", "text", "off"],
];

const SETTINGS = `
  query Settings { organization { settings { ${SETTINGS_FIELDS.map(([name]) => name).join(" ")} } } }
`;

const UPDATE_SETTINGS = `
  mutation UpdateSettings($input: OrganizationSettingsInput!) {
    updateOrganizationSettings(input: $input) {
      __typename
      ... on InvalidInputError { message field }
      ... on Error { message }
    }
  }
`;

const PORTAL = `
  mutation Portal($returnUrl: String!) {
    createBillingPortalSession(returnUrl: $returnUrl) {
      __typename
      ... on BillingPortalSession { url }
      ... on Error { message }
    }
  }
`;

const PURCHASE_TOPUP = `
  mutation Buy($topUpId: String!, $idempotencyKey: String!) {
    purchaseTopUp(topUpId: $topUpId, idempotencyKey: $idempotencyKey) {
      __typename
      ... on TopUpPurchased { purchase { status amount } }
      ... on Error { message }
    }
  }
`;

const EXPORT_DATA = `
  mutation { exportOrganizationData {
    __typename
    ... on OrganizationExport { url }
    ... on Error { message }
  } }
`;

const STATUS_TEXT = {
  TRIALING: "Trial",
  ACTIVE: "Active",
  PAST_DUE: "Payment past due",
  UNPAID: "Unpaid",
  CANCELED: "Canceled",
};

const $ = (selector) => document.querySelector(selector);

class OrganizationPage {
  constructor() {
    this.organization = null;
    this.stopLive = null;
    this.stats = null;
    this.chosenPlan = null;
    this.planChangeKey = null;
    this.chosenTopUp = null;
    this.topUpKey = null;
  }

  /** Wires the page's controls and loads it (or asks for a key). */
  start() {
    setUpDialogs();
    adoptKeyFromFragment();
    $("#sign-in-form").addEventListener("submit", (event) => this.submitKey(event));
    for (const button of ["#change-plan", "#plan-change-plan"]) {
      $(button).addEventListener("click", () => this.openPlanDialog());
    }
    for (const button of ["#manage-billing", "#plan-manage-billing"]) {
      $(button).addEventListener("click", () => this.manageBilling());
    }
    $("#open-settings").addEventListener("click", () => this.openSettings());
    $("#view-stats").addEventListener("click", () => this.openStats());
    $("#show-all-plans").addEventListener("click", () => this.toggleAllPlans());
    $("#preview-back").addEventListener("click", () => this.showPlanChoices());
    $("#confirm-plan").addEventListener("click", () => this.confirmPlanChange());
    $("#cancel-scheduled").addEventListener("click", () => this.cancelScheduledChange());
    $("#settings-form").addEventListener("submit", (event) => this.saveSettings(event));
    $("#confirm-topup").addEventListener("click", () => this.confirmTopUp());
    $("#export-data").addEventListener("click", () => this.exportData());
    this.buildSettingsForm();
    if (currentKey()) this.load();
    else this.askForKey();
  }

  askForKey(message = "") {
    this.stopLiveUpdates();
    $("#organization").hidden = true;
    $("#actions").hidden = true;
    $("#sign-in").hidden = false;
    $("#api-key-error").textContent = message;
    $("#api-key").focus();
  }

  submitKey(event) {
    event.preventDefault();
    const key = $("#api-key").value.trim();
    if (!key) {
      $("#api-key-error").textContent = "Enter an API key.";
      return;
    }
    signIn(key);
    $("#api-key").value = "";
    this.load();
  }

  /** Fetches the whole page and renders it; starts live meters once. */
  async load() {
    let data;
    try {
      data = await graphql(PAGE);
    } catch (error) {
      if (error instanceof ApiError && error.code === "UNAUTHENTICATED") {
        signOut();
        this.askForKey("This key was refused: it is unknown or revoked.");
      } else {
        this.notice(error.message, "error");
      }
      return;
    }
    if (!data.organization) {
      signOut();
      this.askForKey("This key reads no organization.");
      return;
    }
    this.organization = data.organization;
    $("#sign-in").hidden = true;
    $("#organization").hidden = false;
    $("#actions").hidden = false;
    this.render();
    this.startLiveUpdates();
  }

  render() {
    const org = this.organization;
    const subscription = org.subscription;
    setField("org-name", org.name);
    setField("plan-name", org.plan.name);
    setField("plan-card-name", org.plan.name);
    setField("plan-price", `${wholeAmount(org.plan.priceMonthly.formatted)}/month HT`);
    const day = Number(subscription.currentPeriodStart.slice(8, 10));
    setField("resets", `Resets on the ${ordinal(day)}`);
    const status = STATUS_TEXT[subscription.status] ?? subscription.status;
    const trial = subscription.trialEndsOn ? `, trial ends on ${formatDate(subscription.trialEndsOn)}` : "";
    const canceling = subscription.cancelAtPeriodEnd ? `, ends on ${formatDate(subscription.currentPeriodEnd)}` : "";
    setField("subscription-status", `Subscription: ${status}${trial}${canceling}`);
    const pending = $("#pending-plan");
    pending.hidden = !subscription.pendingPlan;
    $("#cancel-scheduled").hidden = !subscription.pendingPlan;
    if (subscription.pendingPlan) {
      pending.textContent = `Changes to ${subscription.pendingPlan.name} on ${formatDate(subscription.currentPeriodEnd)}.`;
    }
    this.renderUsage(org.usage);
    this.renderStateNotices();
    this.renderTopUps();
    this.renderSpendCap();
    this.renderInvoices();
  }

  renderStateNotices() {
    const subscription = this.organization.subscription;
    for (const old of document.querySelectorAll("[data-state-notice]")) old.remove();
    if (subscription.paymentIssue) {
      this.notice(subscription.paymentIssue.message, "error", { state: true });
    } else if (subscription.usageSuspended) {
      this.notice("Usage is suspended: the subscription is not active.", "error", { state: true });
    }
    if (subscription.status === "TRIALING" && subscription.trialEndsOn) {
      this.notice(`Your trial ends on ${formatDate(subscription.trialEndsOn)}.`, "info", { state: true });
    }
  }

  renderUsage(usage) {
    const badge = $("#percent-used");
    badge.textContent = `${Math.round(usage.percentUsed)}% USED`;
    badge.classList.toggle("warn", usage.percentUsed >= 80);
    const list = $("#meters");
    for (const resource of usage.resources) {
      let item = list.querySelector(`[data-resource="${CSS.escape(resource.key)}"]`);
      if (!item) {
        item = meterItem(resource.key);
        list.append(item);
      }
      updateMeter(item, resource);
    }
  }

  renderTopUps() {
    const topUps = this.organization.topUps.filter((offer) => offer.price);
    $("#topups").hidden = topUps.length === 0;
    const list = $("#topup-list");
    list.replaceChildren(
      ...topUps.map((offer) => {
        const button = element("button", { type: "button", className: "button small" }, `Buy ${offer.name} · ${offer.price.formatted}`);
        button.addEventListener("click", () => this.openTopUp(offer));
        return element("li", {}, button);
      }),
    );
  }

  renderSpendCap() {
    const overage = this.organization.plan.limits.some((limit) => limit.policy === "OVERAGE");
    const line = $("#spend-cap");
    line.hidden = !overage;
    if (overage) {
      const cap = this.organization.spendCap;
      line.textContent = cap.cap
        ? `Overage spend cap: ${cap.spent.formatted} of ${cap.cap.formatted} this period`
        : `Overage this period: ${cap.spent.formatted} (no spend cap set)`;
    }
  }

  renderInvoices() {
    const invoices = this.organization.invoices.nodes;
    $("#no-invoices").hidden = invoices.length > 0;
    $("#invoices").replaceChildren(
      ...invoices.map((invoice) => {
        const label = `${invoice.kind === "credit_note" ? "credit note" : "invoice"} ${invoice.number}`;
        const links = element("span", { className: "invoice-links" });
        if (invoice.pdfUrl) {
          links.append(element("a", { href: invoice.pdfUrl, download: "", className: "button small", ariaLabel: `Download ${label} as PDF` }, "↓ Download"));
        }
        if (invoice.hostedUrl) {
          links.append(element("a", { href: invoice.hostedUrl, target: "_blank", rel: "noopener", className: "button small", ariaLabel: `View ${label} in a new tab` }, "↗ View"));
        }
        return element(
          "li",
          { className: "invoice", dataset: { number: invoice.number } },
          element("span", { className: "invoice-number" }, invoice.number),
          element("span", { className: "invoice-date" }, formatDate(invoice.date)),
          element("span", { className: "invoice-amount" }, invoice.amount.formatted),
          element("span", { className: `invoice-status status-${invoice.status}` }, invoice.status),
          links,
        );
      }),
    );
  }

  notice(message, tone = "info", { state = false } = {}) {
    const close = element("button", { type: "button", className: "icon-button", ariaLabel: "Dismiss" }, "×");
    const item = element("div", { className: `notice ${tone}`, role: tone === "error" ? "alert" : "status" }, element("p", {}, message), close);
    if (state) item.dataset.stateNotice = "";
    close.addEventListener("click", () => item.remove());
    $("#notices").append(item);
    return item;
  }

  // Live meters

  async startLiveUpdates() {
    if (this.stopLive) return;
    this.stopLive = () => {};
    let available = false;
    try {
      available = await liveUsageAvailable();
    } catch {
      available = false;
    }
    if (!available) return;
    this.stopLive = watchUsage({
      key: currentKey(),
      organizationId: this.organization.id,
      onChange: ({ usage, thresholdsCrossed }) => {
        this.organization.usage = usage;
        this.renderUsage(usage);
        for (const crossed of thresholdsCrossed) {
          const what = crossed.kind === "SPEND_CAP" ? "of the spend cap" : "of the limit";
          const label = usage.resources.find((resource) => resource.key === crossed.resource)?.label ?? crossed.resource;
          this.notice(`${label}: ${crossed.threshold}% ${what} reached.`, crossed.threshold >= 100 ? "error" : "warn");
        }
      },
      onClosed: (message) => this.notice(message, "warn"),
    });
  }

  stopLiveUpdates() {
    if (this.stopLive) this.stopLive();
    this.stopLive = null;
  }

  // Change Plan

  async openPlanDialog() {
    const dialog = $("#plan-dialog");
    this.showPlanChoices();
    $("#recommendations").replaceChildren(element("li", { className: "muted" }, "Loading plans…"));
    openDialog(dialog);
    let data;
    try {
      data = await graphql(RECOMMENDATIONS);
    } catch (error) {
      $("#recommendations").replaceChildren(element("li", { className: "field-error" }, error.message));
      return;
    }
    const recommendations = data.organization.planRecommendations;
    const shown = recommendations.filter((entry) => entry.recommended || entry.current);
    const fitting = recommendations.filter((entry) => entry.fits && !entry.recommended && !entry.current);
    $("#recommendations").replaceChildren(
      ...[...shown, ...fitting].map((entry) => this.planChoice(entry.plan, entry)),
    );
    $("#all-plans").replaceChildren(...data.plans.map((plan) => this.planChoice(plan, recommendations.find((entry) => entry.plan.id === plan.id))));
    $("#recommendations").querySelector("button")?.focus();
  }

  planChoice(plan, recommendation) {
    const current = recommendation?.current ?? plan.id === this.organization.plan.id;
    const tags = [];
    if (current) tags.push(element("span", { className: "tag" }, "Current plan"));
    if (recommendation?.recommended) tags.push(element("span", { className: "tag good" }, "Recommended"));
    if (recommendation && !recommendation.fits) tags.push(element("span", { className: "tag warn" }, "Does not fit"));
    const reasons = recommendation
      ? element("ul", { className: "reasons" }, ...recommendation.reasons.map((reason) => element("li", { className: reason.fits ? "" : "warn" }, reason.message)))
      : null;
    const choose = element("button", { type: "button", className: "button small", disabled: current, dataset: { plan: plan.id } }, current ? "Current" : `Choose ${plan.name}`);
    choose.addEventListener("click", () => this.previewPlan(plan));
    return element(
      "li",
      { className: "choice", dataset: { plan: plan.id } },
      element("div", { className: "choice-head" }, element("strong", {}, plan.name), element("span", {}, `${wholeAmount(plan.priceMonthly.formatted)}/month HT`), ...tags),
      reasons,
      choose,
    );
  }

  toggleAllPlans() {
    const list = $("#all-plans");
    list.hidden = !list.hidden;
    $("#show-all-plans").setAttribute("aria-expanded", String(!list.hidden));
    $("#show-all-plans").textContent = list.hidden ? "View all plans" : "Hide all plans";
  }

  showPlanChoices() {
    $("#plan-choices").hidden = false;
    $("#plan-preview").hidden = true;
    $("#preview-error").textContent = "";
  }

  async previewPlan(plan) {
    this.chosenPlan = plan;
    this.planChangeKey = idempotencyKey("page-plan-change");
    $("#plan-choices").hidden = true;
    $("#plan-preview").hidden = false;
    $("#preview-title").textContent = `Switch to ${plan.name}`;
    for (const id of ["#preview-amounts", "#preview-resources", "#preview-blockers", "#preview-warnings"]) $(id).replaceChildren();
    const confirm = $("#confirm-plan");
    confirm.disabled = true;
    let preview;
    try {
      preview = (await graphql(PREVIEW, { planId: plan.id })).previewPlanChange;
    } catch (error) {
      $("#preview-error").textContent = error.message;
      return;
    }
    if (preview.__typename !== "PlanChangePreview") {
      $("#preview-error").textContent = preview.message;
      $("#preview-back").focus();
      return;
    }
    const amounts = [
      ["Credit for the unused time", preview.credit.formatted],
      [`Charge for ${preview.newPlan.name}`, preview.charge.formatted],
      ["Due now (excl. tax)", preview.amountDueNow.formatted],
      ["Takes effect", formatDate(preview.effectiveAt, { dateStyle: "medium", timeStyle: "short" })],
    ];
    if (preview.carriedCredit.amountMinor > 0) amounts.push(["Kept as credit", preview.carriedCredit.formatted]);
    $("#preview-amounts").replaceChildren(...amounts.flatMap(([term, value]) => [element("dt", {}, term), element("dd", {}, value)]));
    $("#preview-resources").replaceChildren(
      ...preview.resources.map((row) =>
        element(
          "tr",
          { className: row.fits ? "" : "warn" },
          element("th", { scope: "row" }, row.label),
          element("td", {}, String(row.used)),
          element("td", {}, row.currentLimit == null ? "Unlimited" : String(row.currentLimit)),
          element("td", {}, row.newLimit == null ? "Unlimited" : String(row.newLimit)),
          element("td", {}, row.fits ? "Yes" : "No"),
        ),
      ),
    );
    $("#preview-blockers").replaceChildren(...preview.blockers.map((blocker) => element("li", { className: "blocker" }, blocker.message)));
    $("#preview-warnings").replaceChildren(...preview.warnings.map((warning) => element("li", {}, warning)));
    const blocked = !preview.allowed || preview.blockers.length > 0;
    confirm.disabled = blocked;
    confirm.title = blocked ? "Resolve the blockers above first" : "";
    (blocked ? $("#preview-back") : confirm).focus();
  }

  async confirmPlanChange() {
    const confirm = $("#confirm-plan");
    confirm.disabled = true;
    $("#preview-error").textContent = "";
    let result;
    try {
      result = (await graphql(CHANGE_PLAN, { planId: this.chosenPlan.id, idempotencyKey: this.planChangeKey })).changePlan;
    } catch (error) {
      $("#preview-error").textContent = error.message;
      confirm.disabled = false;
      return;
    }
    if (result.__typename !== "PlanChanged") {
      const blockers = result.blockers ? ` ${result.blockers.map((blocker) => blocker.message).join("; ")}` : "";
      $("#preview-error").textContent = `${result.message}${blockers}`;
      return;
    }
    $("#plan-dialog").close();
    const scheduled = result.subscription.pendingPlan;
    this.notice(
      scheduled
        ? `${scheduled.name} starts on ${formatDate(result.effectiveAt)}.`
        : `You are now on ${this.chosenPlan.name}.${result.invoice ? ` Invoice ${result.invoice.number} was issued.` : ""}`,
      "success",
    );
    await this.load();
  }

  async cancelScheduledChange() {
    try {
      const result = (await graphql(CANCEL_SCHEDULED)).cancelScheduledChange;
      if (result.__typename !== "SubscriptionChanged") this.notice(result.message, "error");
    } catch (error) {
      this.notice(error.message, "error");
    }
    await this.load();
  }

  // Organization Settings

  buildSettingsForm() {
    $("#settings-fields").replaceChildren(
      ...SETTINGS_FIELDS.map(([name, label, type, autocomplete]) =>
        element(
          "div",
          { className: "field" },
          element("label", { htmlFor: `setting-${name}` }, label),
          element("input", { id: `setting-${name}`, name, type, autocomplete, ariaDescribedby: `setting-${name}-error` }),
          element("p", { className: "field-error", id: `setting-${name}-error` }),
        ),
      ),
    );
  }

  async openSettings() {
    const form = $("#settings-form");
    this.clearSettingsErrors();
    openDialog($("#settings-dialog"));
    try {
      const settings = (await graphql(SETTINGS)).organization.settings;
      for (const [name] of SETTINGS_FIELDS) form.elements[name].value = settings[name] ?? "";
    } catch (error) {
      $("#settings-error").textContent = error.message;
    }
  }

  clearSettingsErrors() {
    $("#settings-error").textContent = "";
    for (const [name] of SETTINGS_FIELDS) {
      $(`#setting-${name}-error`).textContent = "";
      $(`#setting-${name}`).removeAttribute("aria-invalid");
    }
  }

  async saveSettings(event) {
    event.preventDefault();
    const form = event.currentTarget;
    this.clearSettingsErrors();
    const input = Object.fromEntries(SETTINGS_FIELDS.map(([name]) => [name, form.elements[name].value.trim() || null]));
    let result;
    try {
      result = (await graphql(UPDATE_SETTINGS, { input })).updateOrganizationSettings;
    } catch (error) {
      $("#settings-error").textContent = error.message;
      return;
    }
    if (result.__typename === "OrganizationSettings") {
      $("#settings-dialog").close();
      this.notice("Organization settings saved.", "success");
      return;
    }
    const field = result.field && $(`#setting-${result.field}`);
    if (field) {
      $(`#setting-${result.field}-error`).textContent = result.message;
      field.setAttribute("aria-invalid", "true");
      field.focus();
    } else {
      $("#settings-error").textContent = result.message;
    }
  }

  // Manage Billing

  async manageBilling() {
    const returnUrl = window.location.origin + window.location.pathname;
    try {
      const result = (await graphql(PORTAL, { returnUrl })).createBillingPortalSession;
      if (result.__typename === "BillingPortalSession") {
        window.location.assign(result.url);
      } else {
        this.notice(result.message, "info");
      }
    } catch (error) {
      this.notice(error.message, "error");
    }
  }

  /** Asks for the organization's data export (owners only) and downloads it. */
  async exportData() {
    try {
      const result = (await graphql(EXPORT_DATA)).exportOrganizationData;
      if (result.__typename === "OrganizationExport") {
        window.location.assign(result.url);
      } else {
        this.notice(result.message, "info");
      }
    } catch (error) {
      this.notice(error.message, "error");
    }
  }

  // Top-ups

  openTopUp(offer) {
    this.chosenTopUp = offer;
    this.topUpKey = idempotencyKey("page-topup");
    $("#topup-error").textContent = "";
    $("#confirm-topup").disabled = false;
    $("#topup-summary").textContent = `${offer.name} for ${offer.price.formatted} (excl. tax), charged now and added past your plan's limit until used up.`;
    openDialog($("#topup-dialog"));
  }

  async confirmTopUp() {
    $("#confirm-topup").disabled = true;
    try {
      const result = (await graphql(PURCHASE_TOPUP, { topUpId: this.chosenTopUp.id, idempotencyKey: this.topUpKey })).purchaseTopUp;
      if (result.__typename !== "TopUpPurchased") {
        $("#topup-error").textContent = result.message;
        $("#confirm-topup").disabled = false;
        return;
      }
      $("#topup-dialog").close();
      this.notice(`${this.chosenTopUp.name} bought (${result.purchase.status}).`, "success");
      await this.load();
    } catch (error) {
      $("#topup-error").textContent = error.message;
      $("#confirm-topup").disabled = false;
    }
  }

  // Statistics

  openStats() {
    const dialog = $("#stats-dialog");
    openDialog(dialog);
    this.stats ??= new StatsView(dialog, this.organization.id);
    this.stats.load();
  }
}

function setField(name, text) {
  for (const node of document.querySelectorAll(`[data-field="${name}"]`)) node.textContent = text;
}

function meterItem(key) {
  const labelId = `meter-${key}-label`;
  const bar = element("div", { className: "meter-bar", role: "progressbar", ariaLabelledby: labelId, ariaValuemin: "0", ariaValuemax: "100" }, element("span", { className: "meter-fill" }));
  return element(
    "li",
    { className: "meter", dataset: { resource: key } },
    element(
      "div",
      { className: "meter-head" },
      element("span", { className: "meter-label", id: labelId }),
      element("span", { className: "meter-display" }),
      element("span", { className: "meter-percent" }),
    ),
    bar,
  );
}

function updateMeter(item, resource) {
  const percent = Math.round(resource.percent);
  item.querySelector(".meter-label").textContent = resource.label;
  item.querySelector(".meter-display").textContent = resource.display;
  item.querySelector(".meter-percent").textContent = `${percent}%`;
  const bar = item.querySelector(".meter-bar");
  bar.setAttribute("aria-valuenow", String(Math.min(percent, 100)));
  bar.setAttribute("aria-valuetext", `${resource.display} (${percent}%)`);
  bar.querySelector(".meter-fill").style.width = `${Math.min(resource.percent, 100)}%`;
  item.classList.toggle("warn", resource.percent >= 80 && resource.percent < 100);
  item.classList.toggle("full", resource.percent >= 100);
  item.dataset.used = String(resource.used);
}

new OrganizationPage().start();
