/**
 * A TCP proxy in front of the test PostgreSQL that can cut a connection at the worst moment: the server has
 * committed a statement, and the client has not yet heard that it completed. That is the lost commit an
 * idempotent retry must survive.
 *
 * postgres.js sends Execute with a Flush, then Sync once it has the results; the implicit transaction commits at
 * Sync and the server answers ReadyForQuery. So, once armed, the proxy lets the next request and its results
 * through, forwards the client's Sync, and cuts both sides instead of forwarding the ReadyForQuery that follows the
 * commit. The client sees a closed connection.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export interface CuttingProxy {
  /** The URL to connect through the proxy. */
  url: string;
  /** Cut the connection after the next statement commits, before the client learns it did. */
  cutAfterNextCommit(): void;
  /** How many connections it has cut so far. */
  readonly cuts: number;
  close(): Promise<void>;
}

const syncMessage = Buffer.from([0x53, 0, 0, 0, 4]);

export async function startCuttingProxy(databaseUrl: string): Promise<CuttingProxy> {
  const target = new URL(databaseUrl);
  let state: 'off' | 'armed' | 'committing' = 'off';
  let cuts = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
    sockets.add(client).add(upstream);
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (chunk: Buffer) => {
      if (state === 'armed' && chunk.includes(syncMessage)) state = 'committing';
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (state === 'committing') {
        state = 'off';
        cuts++;
        closeBoth();
        return;
      }
      client.write(chunk);
    });
    client.on('close', closeBoth).on('error', closeBoth);
    upstream.on('close', closeBoth).on('error', closeBoth);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(typeof address === 'object' && address ? address.port : 0);
  return {
    url: url.toString(),
    cutAfterNextCommit: () => {
      state = 'armed';
    },
    get cuts() {
      return cuts;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
