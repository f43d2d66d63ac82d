#!/usr/bin/env node
// Node.js WebSocket echo server (npm ws, no compression) for bench/ws_compare.sh.
//   node bench/ws_echo_node.js [port]     prints "listening on port N"
// ws is loaded from tests/node/node_modules (`cd tests/node && npm ci`).
'use strict';
const path = require('path');
const wsPath = path.join(__dirname, '..', 'tests', 'node', 'node_modules', 'ws');
const { WebSocketServer } = require(wsPath);

const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[2] || 0),
                                  perMessageDeflate: false, backlog: 4096 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on('listening', () => console.log('listening on port ' + wss.address().port));
process.on('SIGTERM', () => process.exit(0));
