// The open ports of a session, kept from its event stream.

export type PortEvent = { type: "port-open"; port: number } | { type: "port-closed"; port: number };

/** The sorted open ports after `event`; the same array when nothing changed. */
export function applyPortEvent(ports: number[], event: PortEvent): number[] {
  if (event.type === "port-open") {
    return ports.includes(event.port) ? ports : [...ports, event.port].sort((a, b) => a - b);
  }
  return ports.includes(event.port) ? ports.filter((p) => p !== event.port) : ports;
}

export function parsePortEvent(text: string): PortEvent | null {
  try {
    const value = JSON.parse(text);
    if ((value?.type === "port-open" || value?.type === "port-closed") && Number.isInteger(value.port)) {
      return value as PortEvent;
    }
  } catch {
    // ignore what is not an event
  }
  return null;
}
