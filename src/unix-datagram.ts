import { constants } from 'node:os';
import { messageOf } from './errors.js';

/**
 * One datagram to a unix socket, through `unix-dgram` (Node has no unix datagram sockets): the gate's
 * audit line to `/dev/log` (src/gate/syslog.ts) and systemd's notifications (src/systemd/notify.ts).
 * The caller loads the optional addon and passes its `createSocket`, so that whoever never sends one
 * never loads it.
 */
export type CreateSocket = typeof import('unix-dgram').createSocket;

/** Send `datagram` to `path`; returns the error (its errno named), or null once sent. */
export function sendDatagram(createSocket: CreateSocket, path: string, datagram: Buffer): string | null {
  try {
    const socket = createSocket('unix_dgram');
    let failure: string | null = null;
    socket.on('error', (error) => {
      failure = errnoText(error);
    });
    socket.send(datagram, 0, datagram.length, path, (error) => {
      if (error !== undefined) failure = errnoText(error);
    });
    socket.close();
    return failure;
  } catch (error) {
    return messageOf(error);
  }
}

/** unix-dgram's errors read `send -2`: name the errno (`send ENOENT`). */
function errnoText(error: Error): string {
  return messageOf(error).replace(/-(\d+)$/, (whole, n: string) => {
    const name = Object.entries(constants.errno).find(([, value]) => value === Number(n))?.[0];
    return name ?? whole;
  });
}
