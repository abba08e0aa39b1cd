import { describe, expect, it } from "vitest";
import { applyPortEvent, parsePortEvent } from "../src/lib/ports";

describe("port events", () => {
  it("keep the open ports sorted and unique", () => {
    let ports: number[] = [];
    for (const text of [
      '{"type":"port-open","port":8000}',
      '{"type":"port-open","port":3000}',
      '{"type":"port-open","port":8000}',
      '{"type":"port-closed","port":8000}',
    ]) {
      ports = applyPortEvent(ports, parsePortEvent(text)!);
    }
    expect(ports).toEqual([3000]);
  });
  it("return the same array when nothing changes", () => {
    const ports = [3000];
    expect(applyPortEvent(ports, { type: "port-open", port: 3000 })).toBe(ports);
    expect(applyPortEvent(ports, { type: "port-closed", port: 1 })).toBe(ports);
  });
  it("ignore what is not an event", () => {
    expect(parsePortEvent("nope")).toBeNull();
    expect(parsePortEvent('{"type":"port-open","port":"80"}')).toBeNull();
    expect(parsePortEvent('{"type":"exit"}')).toBeNull();
  });
});
