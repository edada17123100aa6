// A WebSocket echo server in plain Node.js (no npm): the http server's
// 'upgrade' event and a minimal RFC 6455 frame codec written here. The peer
// of loom's WebSocket echo in make bench (bench/websocket.sh).
//   node bench/websocket_echo_node.js PORT      (127.0.0.1 only)
// It echoes unfragmented text and binary messages, answers pings and closes;
// it refuses unmasked frames, fragments and messages over 1 MiB by closing.
"use strict";
const http = require("http");
const crypto = require("crypto");

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX = 1024 * 1024;

function header(opcode, len) {
  if (len < 126) return Buffer.from([0x80 | opcode, len]);
  if (len < 65536) return Buffer.from([0x80 | opcode, 126, len >> 8, len & 255]);
  const h = Buffer.alloc(10);
  h[0] = 0x80 | opcode;
  h[1] = 127;
  h.writeBigUInt64BE(BigInt(len), 2);
  return h;
}

function send(socket, opcode, payload) {
  socket.write(Buffer.concat([header(opcode, payload.length), payload]));
}

function serve(socket, head) {
  socket.setNoDelay(true);
  let buf = head.length ? Buffer.from(head) : Buffer.alloc(0);
  const fail = () => { send(socket, 8, Buffer.from([0x03, 0xea])); socket.end(); };
  const onData = (data) => {
    buf = buf.length ? Buffer.concat([buf, data]) : data;
    for (;;) {
      if (buf.length < 2) return;
      const fin = buf[0] & 0x80, opcode = buf[0] & 0x0f, masked = buf[1] & 0x80;
      let len = buf[1] & 0x7f, at = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2); at = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2)); at = 10;
      }
      if (!fin || !masked || len > MAX) return fail();
      if (buf.length < at + 4 + len) return;
      const key = buf.subarray(at, at + 4);
      const payload = Buffer.from(buf.subarray(at + 4, at + 4 + len));
      for (let i = 0; i < len; i++) payload[i] ^= key[i & 3];
      buf = buf.subarray(at + 4 + len);
      if (opcode === 1 || opcode === 2) send(socket, opcode, payload);
      else if (opcode === 9) send(socket, 10, payload);
      else if (opcode === 8) { send(socket, 8, payload.subarray(0, 2)); socket.end(); return; }
      else if (opcode !== 10) return fail();
    }
  };
  socket.on("data", onData);
  socket.on("error", () => socket.destroy());
}

const server = http.createServer((req, res) => {
  res.writeHead(426, { Upgrade: "websocket" });
  res.end();
});
server.on("upgrade", (req, socket, head) => {
  const key = req.headers["sec-websocket-key"];
  if (!key || (req.headers.upgrade || "").toLowerCase() !== "websocket") {
    socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    return;
  }
  const accept = crypto.createHash("sha1").update(key + GUID).digest("base64");
  socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    + "Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n");
  serve(socket, head);
});
server.listen(Number(process.argv[2] || process.env.PORT || 8080), "127.0.0.1", 511, () => {
  console.log("listening on 127.0.0.1:" + server.address().port);
});
