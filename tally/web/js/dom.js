// Small DOM and formatting helpers.

/** An element with properties (className, dataset, aria*, text...) and children. */
export function element(tag, properties = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(properties)) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("aria") || name === "role") node.setAttribute(name === "role" ? "role" : `aria-${name.slice(4).toLowerCase()}`, value);
    else node[name] = value;
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** 1234567 -> "1.2M", as the API's displays read. */
export function compactNumber(value) {
  const number = Number(value);
  const units = [
    [1e12, "T"],
    [1e9, "B"],
    [1e6, "M"],
    [1e3, "K"],
  ];
  for (const [size, suffix] of units) {
    if (Math.abs(number) >= size) return `${(number / size).toFixed(1)}${suffix}`;
  }
  return String(number);
}

/** "€1,890.00" -> "€1,890": whole amounts without their zero cents, as the page shows prices. */
export function wholeAmount(formatted) {
  return formatted.replace(/([.,]00)(?=\D*$)/, "");
}

/** A date ("2026-12-01" or an instant) in the viewer's locale and time zone. */
export function formatDate(value, options = { dateStyle: "medium" }) {
  const date = /^\d{4}-\d{2}-\d{2}$/.test(value) ? new Date(`${value}T00:00:00`) : new Date(value);
  return new Intl.DateTimeFormat(undefined, options).format(date);
}

/** 1 -> "1st", 22 -> "22nd". */
export function ordinal(day) {
  const tens = day % 100;
  if (tens >= 11 && tens <= 13) return `${day}th`;
  return `${day}${{ 1: "st", 2: "nd", 3: "rd" }[day % 10] ?? "th"}`;
}
