/**
 * The inline confirmation of the sessions component: the question and
 * [Sign out] [Cancel], shown next to the button that asked, instead of acting
 * on the first click. Escape cancels.
 */
import { button, el, uniqueId } from "./dom.js";

export interface ConfirmBoxOptions {
  question: string;
  yes: string;
  cancel: string;
  /** "Everywhere" and this device: the stronger warning style (`sg-confirm-danger`). */
  danger: boolean;
  onYes: () => void;
  onCancel: () => void;
}

/** A `role="group"` named by its question; the confirming button is described by it too. */
export function confirmBox(doc: Document, options: ConfirmBoxOptions): { box: HTMLDivElement; yes: HTMLButtonElement } {
  const box = el(doc, "div", options.danger ? "sg-confirm sg-confirm-danger" : "sg-confirm");
  box.id = uniqueId("sg-confirm");
  box.setAttribute("role", "group");
  const question = el(doc, "p", "sg-confirm-question", options.question);
  question.id = uniqueId("sg-confirm-question");
  box.setAttribute("aria-labelledby", question.id);
  const yes = button(doc, "sg-confirm-yes", options.yes);
  yes.setAttribute("aria-describedby", question.id);
  const cancel = button(doc, "sg-confirm-cancel", options.cancel);
  const buttons = el(doc, "div", "sg-confirm-buttons");
  buttons.append(yes, cancel);
  box.append(question, buttons);
  box.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      options.onCancel();
    }
  });
  yes.addEventListener("click", () => options.onYes());
  cancel.addEventListener("click", () => options.onCancel());
  return { box, yes };
}
