/**
 * The fan-out ceiling: a plain `ws` server that subscribes to one Redis channel and sends each
 * message, as it came, to every connected client. No GraphQL, no auth, no per-subscriber work:
 * what delivering one published message to N sockets costs by itself.
 *
 *   node dist/bench/lib/ws-broadcast.js <redis url> <channel>
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import Redis from "ioredis";
import { WebSocketServer, type WebSocket } from "ws";

const [redisUrl, channel] = process.argv.slice(2);
const server = http.createServer();
const wss = new WebSocketServer({ server });
const sockets = new Set<WebSocket>();
wss.on("connection", (ws) => {
  sockets.add(ws);
  ws.on("close", () => sockets.delete(ws));
});
const sub = new Redis(redisUrl!);
void sub.subscribe(channel!);
sub.on("message", (_channel: string, message: string) => {
  for (const ws of sockets) ws.send(message);
});
server.listen(0, "127.0.0.1", () => {
  const port = (server.address() as AddressInfo).port;
  console.log(JSON.stringify({ msg: "ws-broadcast listening", port }));
});
process.once("SIGTERM", () => {
  for (const ws of sockets) ws.terminate();
  sub.disconnect();
  server.close(() => process.exit(0));
});
