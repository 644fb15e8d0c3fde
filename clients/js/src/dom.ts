/**
 * Small DOM helpers of the sessions component. Text is always set with
 * `textContent`: values from the server (user agents, IPs) are
 * attacker-controlled and must never be parsed as HTML.
 */
import type { DeviceType } from "./device.js";

export function el<K extends keyof HTMLElementTagNameMap>(
  doc: Document,
  tag: K,
  className: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = doc.createElement(tag);
  if (className !== "") node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function button(doc: Document, className: string, text: string): HTMLButtonElement {
  const b = el(doc, "button", className, text);
  b.type = "button";
  return b;
}

/** A " · " between inline parts, hidden from screen readers. */
export function separator(doc: Document): HTMLSpanElement {
  const sep = el(doc, "span", "sg-sep", " · ");
  sep.setAttribute("aria-hidden", "true");
  return sep;
}

const SVG = "http://www.w3.org/2000/svg";

/** 24x24 outline paths (stroke = currentColor), one per device type. */
const ICONS: Record<DeviceType, string> = {
  phone: "M8 2.5h8a1.5 1.5 0 0 1 1.5 1.5v16a1.5 1.5 0 0 1-1.5 1.5H8A1.5 1.5 0 0 1 6.5 20V4A1.5 1.5 0 0 1 8 2.5zM11 18.5h2",
  tablet: "M6 2.5h12A1.5 1.5 0 0 1 19.5 4v16a1.5 1.5 0 0 1-1.5 1.5H6A1.5 1.5 0 0 1 4.5 20V4A1.5 1.5 0 0 1 6 2.5zM11 18.5h2",
  desktop: "M3.5 4.5h17a1 1 0 0 1 1 1v10a1 1 0 0 1-1 1h-17a1 1 0 0 1-1-1v-10a1 1 0 0 1 1-1zM9 20.5h6M12 16.5v4",
  unknown: "M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM9.5 9.5a2.5 2.5 0 1 1 3.5 2.3c-.6.3-1 .9-1 1.6v.6M12 17.2v.1",
};

/** A decorative device icon (`aria-hidden`): the device name says the same in words. */
export function deviceIcon(doc: Document, type: DeviceType): HTMLSpanElement {
  const wrap = el(doc, "span", "sg-device-icon");
  wrap.dataset.deviceType = type;
  wrap.setAttribute("aria-hidden", "true");
  const svg = doc.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "24");
  svg.setAttribute("height", "24");
  svg.setAttribute("focusable", "false");
  const path = doc.createElementNS(SVG, "path");
  path.setAttribute("d", ICONS[type]);
  path.setAttribute("fill", "none");
  path.setAttribute("stroke", "currentColor");
  path.setAttribute("stroke-width", "1.6");
  path.setAttribute("stroke-linecap", "round");
  path.setAttribute("stroke-linejoin", "round");
  svg.append(path);
  wrap.append(svg);
  return wrap;
}

let idSeq = 0;

/** A document-unique id for aria-labelledby / aria-describedby. */
export function uniqueId(prefix: string): string {
  return `${prefix}-${++idSeq}`;
}
