'use strict'
// One scripted Yjs client: the stock npm `y-websocket` WebsocketProvider over `ws`, driven by
// JSON lines on stdin (one command each, run in order) and answering with JSON lines on stdout.
//
//   node client.js [--url ws://host:port/ws/artifacts --room <id> --token <t>]   (args = a first `connect`)
//
// Commands ({"cmd": ..., ...}):
//   connect {url, room, token}     wait-synced {timeout_ms}      read
//   insert {text, index?}          (index clamped to the length; omitted = append)
//   delete {index, length} | {text}  (text = its first occurrence)
//   offline (provider.disconnect())  online (provider.connect())
//   set-awareness {state}          awareness                     wait-awareness {names, timeout_ms}
//   wait-text {equals | contains, timeout_ms}                     close
// Every command gets one reply {"reply": cmd, "ok": true, ...} or {"reply": cmd, "ok": false, "error"}.
// Provider events are printed as {"event": ...} lines in between.

const readline = require('node:readline')
const Y = require('yjs')
const { WebsocketProvider } = require('y-websocket')
const WebSocket = require('ws')

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

let doc = null
let provider = null
let lastError = null
let lastClose = null

const need = () => {
  if (!provider) throw new Error('not connected: send connect first')
  return provider
}
const text = () => doc.getText('content').toString()
const clamp = (n, max) => Math.max(0, Math.min(Number.isInteger(n) ? n : max, max))

function connect ({ url, room, token }) {
  if (provider) throw new Error('already connected')
  doc = new Y.Doc()
  provider = new WebsocketProvider(url, room, doc, {
    params: token ? { token } : {},
    WebSocketPolyfill: WebSocket,
    disableBc: true // each client talks to the server only, never to a sibling in this process
  })
  provider.on('status', ({ status }) => out({ event: 'status', status }))
  provider.on('sync', (synced) => out({ event: 'sync', synced }))
  provider.on('connection-error', (ev) => {
    lastError = (ev && ev.message) || String(ev)
    out({ event: 'connection-error', error: lastError })
  })
  provider.on('connection-close', (ev) => {
    lastClose = ev ? { code: ev.code, reason: String(ev.reason || '') } : null
    out({ event: 'connection-close', close: lastClose })
  })
  return { client_id: doc.clientID }
}

async function waitFor (what, pred, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs
  while (!pred()) {
    if (Date.now() > deadline) {
      const detail = { text: doc && text(), synced: provider && provider.synced, lastError, lastClose }
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${JSON.stringify(detail)}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

function awarenessStates () {
  return Array.from(need().awareness.getStates(), ([clientId, state]) => ({ client_id: clientId, state }))
}

const commands = {
  connect,
  'wait-synced': async ({ timeout_ms: t }) => {
    await waitFor('sync', () => need().synced, t)
    return { text: text() }
  },
  read: () => ({ synced: need().synced, connected: provider.wsconnected, text: text() }),
  insert: ({ text: s, index }) => {
    const ytext = (need(), doc.getText('content'))
    const at = clamp(index, ytext.length)
    ytext.insert(at, String(s))
    return { index: at, text: text() }
  },
  delete: ({ index, length, text: s }) => {
    const ytext = (need(), doc.getText('content'))
    if (typeof s === 'string') {
      index = text().indexOf(s)
      if (index < 0) throw new Error(`${JSON.stringify(s)} not in ${JSON.stringify(text())}`)
      length = s.length
    }
    const at = clamp(index, ytext.length)
    ytext.delete(at, clamp(length, ytext.length - at))
    return { text: text() }
  },
  offline: () => (need().disconnect(), {}),
  online: () => (need().connect(), {}),
  'set-awareness': ({ state }) => (need().awareness.setLocalState(state === undefined ? null : state), {}),
  awareness: () => ({ states: awarenessStates(), self: doc.clientID }),
  'wait-awareness': async ({ names, timeout_ms: t }) => {
    const want = JSON.stringify([...names].sort())
    const got = () => JSON.stringify(awarenessStates().map((s) => s.state && s.state.name).filter(Boolean).sort())
    await waitFor(`awareness names ${want} (have ${got()})`, () => got() === want, t)
    return { states: awarenessStates() }
  },
  'wait-text': async ({ equals, contains, timeout_ms: t }) => {
    const ok = () => (equals === undefined || text() === equals) && (contains === undefined || text().includes(contains))
    await waitFor(`text ${JSON.stringify({ equals, contains })}`, ok, t)
    return { text: text() }
  },
  close: () => {
    if (provider) provider.destroy()
    if (doc) doc.destroy()
    provider = null
    setImmediate(() => process.exit(0))
    return {}
  }
}

async function run (msg) {
  const name = msg && typeof msg === 'object' ? msg.cmd : undefined
  try {
    const handler = Object.hasOwn(commands, name) ? commands[name] : null
    if (!handler) throw new Error((msg && msg.error) || `unknown command ${JSON.stringify(name)}`)
    out({ reply: name ?? null, ok: true, ...(await handler(msg)) })
  } catch (err) {
    out({ reply: name ?? null, ok: false, error: String((err && err.message) || err) })
  }
}

let queue = Promise.resolve()
const enqueue = (msg) => { queue = queue.then(() => run(msg)) }

const args = {}
for (let i = 2; i + 1 < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1]
if (args.url) enqueue({ cmd: 'connect', ...args })

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  if (!line.trim()) return
  let msg
  try {
    msg = JSON.parse(line)
  } catch (err) {
    msg = { cmd: 'invalid', error: `bad JSON: ${err.message}` }
  }
  enqueue(msg)
})
// The driving test went away: leave quietly.
rl.on('close', () => queue.then(() => commands.close()))
process.on('uncaughtException', (err) => {
  out({ event: 'fatal', error: String((err && err.stack) || err) })
  process.exit(1)
})
