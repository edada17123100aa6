// Node.js TLS echo server, the peer of loom's TLS echo in make bench
// (bench/tls.sh): socket 'data' -> socket.write, as ../shared/bench's
// echo_node.js over net.
// usage: node echo_tls_node.js PORT CERT.pem KEY.pem
// Listens on 127.0.0.1, backlog 511, TCP_NODELAY; TLS 1.2 and 1.3 (Node's
// defaults), session resumption off so every handshake is a full one.
'use strict';
const fs = require('fs');
const tls = require('tls');

const [port, cert, key] = process.argv.slice(2);
const server = tls.createServer({
  cert: fs.readFileSync(cert),
  key: fs.readFileSync(key),
}, (socket) => {
  socket.setNoDelay(true);
  socket.on('data', (data) => socket.write(data));
  socket.on('error', () => socket.destroy());
});
server.on('tlsClientError', () => {});
server.listen({ port: Number(port), host: '127.0.0.1', backlog: 511 }, () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
