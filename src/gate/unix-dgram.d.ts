/** The part of `unix-dgram` (a native addon without types of its own) that `src/gate/syslog.ts` uses. */
declare module 'unix-dgram' {
  interface UnixDgramSocket {
    on(event: 'error', listener: (error: Error) => void): this;
    /** Synchronous: the callback runs before it returns. */
    send(buf: Buffer, offset: number, length: number, path: string, callback: (error?: Error) => void): void;
    close(): void;
  }
  export function createSocket(type: 'unix_dgram'): UnixDgramSocket;
}
