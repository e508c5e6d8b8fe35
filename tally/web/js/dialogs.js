// Modal dialogs: native <dialog> opened modally (the rest of the page inert, Escape closes),
// focus kept inside with Tab and Shift+Tab, and given back to what opened it.

const FOCUSABLE =
  'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

function focusables(dialog) {
  return [...dialog.querySelectorAll(FOCUSABLE)].filter(
    (element) => !element.closest("[hidden]") && element.getClientRects().length > 0,
  );
}

/** Wires every dialog's close buttons and its focus trap; call once. */
export function setUpDialogs() {
  for (const dialog of document.querySelectorAll("dialog")) {
    for (const button of dialog.querySelectorAll("[data-close]")) {
      button.addEventListener("click", () => dialog.close());
    }
    dialog.addEventListener("keydown", (event) => {
      if (event.key !== "Tab") return;
      const items = focusables(dialog);
      if (items.length === 0) return;
      const first = items[0];
      const last = items[items.length - 1];
      if (event.shiftKey && document.activeElement === first) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && document.activeElement === last) {
        event.preventDefault();
        first.focus();
      }
    });
    dialog.addEventListener("close", () => {
      const opener = dialog.openedBy;
      dialog.openedBy = null;
      if (opener && opener.isConnected) opener.focus();
    });
  }
}

/** Opens `dialog` modally and focuses its first control (after its heading's close button). */
export function openDialog(dialog) {
  dialog.openedBy = document.activeElement;
  if (!dialog.open) dialog.showModal();
  const items = focusables(dialog).filter((element) => !element.hasAttribute("data-close"));
  (items[0] ?? focusables(dialog)[0])?.focus();
}
