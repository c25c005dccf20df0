// hutch JavaScript kernel: one long-lived Node.js process per sandbox context, driven by the agent.
//
// Same protocol as python_kernel.py: fd 3 carries length-prefixed JSON commands from the agent,
// fd 4 carries frames back (u32 LE length, kind byte "o" stdout / "e" stderr / "j" JSON, payload),
// fd 5 and fd 6 are the read ends of this process's own stdout/stderr pipes (output of child
// processes), forwarded in the same stream.
//
// Cells run with vm.Script#runInThisContext, so globals persist between cells. Top-level
// let/const/class become var (re-running a cell must not fail with "already declared"), and a cell
// with top-level await is wrapped in an async function whose declarations are hoisted out, with
// the last expression returned. Both need a parser: Node's bundled acorn (--expose-internals);
// without it cells still run, only those two conveniences are missing.
'use strict';

const fs = require('fs');
const net = require('net');
const vm = require('vm');
const util = require('util');
const path = require('path');
const { Writable } = require('stream');
const { Console } = require('console');
const Module = require('module');
const { StringDecoder } = require('string_decoder');

const DRIVER = __filename;

// Re-open the protocol descriptors with O_CLOEXEC so child processes do not inherit them (Node
// cannot set the flag on an inherited descriptor).
function reopen(fd, flags) {
  try {
    const n = fs.openSync(`/proc/self/fd/${fd}`, flags);
    fs.closeSync(fd);
    return n;
  } catch {
    return fd;
  }
}
const EVT = reopen(4, 'w');
const CMD = reopen(3, 'r');
const OUT_R = reopen(5, 'r');
const ERR_R = reopen(6, 'r');

// ---------------------------------------------------------------------------------------------
// Output: frames on EVT, buffered for a few milliseconds while a cell runs.

let pending = []; // [kind, [Buffer, ...]]: runs of one stream, joined when flushed
let pendingSize = 0;
let running = false;
let lastFlush = 0;
let flushScheduled = false;

function writeAll(buf) {
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(EVT, buf, off, buf.length - off);
    } catch (e) {
      if (e.code === 'EAGAIN') continue;
      process.exit(0); // the agent is gone
    }
  }
}

function frame(kind, payload) {
  const header = Buffer.allocUnsafe(5);
  header.writeUInt32LE(payload.length + 1, 0);
  header[4] = kind.charCodeAt(0);
  return [header, payload];
}

function flush() {
  flushScheduled = false;
  lastFlush = Date.now();
  if (pending.length === 0) return;
  const parts = [];
  for (const [kind, chunks] of pending) {
    const data = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    for (let i = 0; i < data.length; i += 1 << 20) parts.push(...frame(kind, data.subarray(i, i + (1 << 20))));
  }
  pending = [];
  pendingSize = 0;
  writeAll(Buffer.concat(parts));
}

// Output that child processes wrote to fd 1/2 before this point is read synchronously, so it is
// sent before what the cell prints next (the pipe handles are non-blocking: EAGAIN ends a drain).
const drainBuf = Buffer.allocUnsafe(65536);
let lastDrain = 0n;
function drainFds(force) {
  const now = process.hrtime.bigint();
  if (!force && now - lastDrain < 1000000n) return;
  lastDrain = now;
  for (const [fd, kind] of [[OUT_R, 'o'], [ERR_R, 'e']]) {
    for (;;) {
      let n = 0;
      try {
        n = fs.readSync(fd, drainBuf, 0, drainBuf.length, null);
      } catch {
        break;
      }
      if (n <= 0) break;
      appendPending(kind, Buffer.from(drainBuf.subarray(0, n)));
    }
  }
}

function appendPending(kind, buf) {
  const last = pending[pending.length - 1];
  if (last && last[0] === kind) last[1].push(buf);
  else pending.push([kind, [buf]]);
  pendingSize += buf.length;
}

function emit(kind, data, fromPipe) {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
  if (buf.length === 0) return;
  if (!fromPipe) drainFds(false);
  appendPending(kind, buf);
  if (!running || pendingSize >= 65536 || Date.now() - lastFlush >= 5) {
    flush();
  } else if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
}

function send(msg) {
  drainFds(true);
  flush();
  writeAll(Buffer.concat(frame('j', Buffer.from(JSON.stringify(msg), 'utf8'))));
}

function toText(chunk, encoding) {
  if (typeof chunk === 'string') return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk);
  return String(chunk);
}

function sink(kind) {
  return new Writable({
    decodeStrings: false,
    write(chunk, encoding, cb) {
      emit(kind, toText(chunk, encoding));
      cb();
    },
  });
}

const userConsole = new Console({ stdout: sink('o'), stderr: sink('e'), colorMode: false });
globalThis.console = userConsole;
for (const [stream, kind] of [[process.stdout, 'o'], [process.stderr, 'e']]) {
  stream.write = function write(chunk, encoding, cb) {
    emit(kind, toText(chunk, typeof encoding === 'string' ? encoding : undefined));
    const done = typeof encoding === 'function' ? encoding : cb;
    if (typeof done === 'function') process.nextTick(done);
    return true;
  };
}

for (const [fd, kind] of [[OUT_R, 'o'], [ERR_R, 'e']]) {
  try {
    const s = new net.Socket({ fd, readable: true, writable: false });
    s.on('data', (chunk) => emit(kind, chunk, true));
    s.on('error', () => {});
    s.unref();
  } catch {
    // fd-level output is then lost; Node-level output still works.
  }
}

// ---------------------------------------------------------------------------------------------
// display()

function inspect(value) {
  return util.inspect(value, { depth: 4, colors: false, maxArrayLength: 200, maxStringLength: 100000 });
}

function display(value) {
  send({ type: 'display', data: { 'text/plain': inspect(value) } });
}
function displayMime(mime, toData) {
  return (value) => send({ type: 'display', data: { [mime]: toData(value), 'text/plain': `<${mime}>` } });
}
const asBase64 = (v) => (typeof v === 'string' ? v : Buffer.from(v).toString('base64'));
display.html = displayMime('text/html', String);
display.markdown = displayMime('text/markdown', String);
display.svg = displayMime('image/svg+xml', String);
display.latex = displayMime('text/latex', String);
display.png = displayMime('image/png', asBase64);
display.jpeg = displayMime('image/jpeg', asBase64);
display.json = displayMime('application/json', (v) => JSON.parse(JSON.stringify(v)));
display.mime = (bundle) => send({ type: 'display', data: bundle });
globalThis.display = display;

// ---------------------------------------------------------------------------------------------
// Source preparation.

let acorn;
function getAcorn() {
  if (acorn === undefined) {
    acorn = null;
    for (const name of ['internal/deps/acorn/acorn/dist/acorn', 'acorn']) {
      try {
        acorn = require(name);
        break;
      } catch {
        // try the next
      }
    }
  }
  return acorn;
}

const FUNCTION_TYPES = new Set(['FunctionDeclaration', 'FunctionExpression', 'ArrowFunctionExpression']);

function hasTopLevelAwait(node) {
  if (!node || typeof node.type !== 'string') return false;
  if (node.type === 'AwaitExpression') return true;
  if (node.type === 'ForOfStatement' && node.await) return true;
  if (FUNCTION_TYPES.has(node.type)) return false;
  for (const key of Object.keys(node)) {
    const child = node[key];
    if (Array.isArray(child)) {
      for (const c of child) if (c && typeof c === 'object' && hasTopLevelAwait(c)) return true;
    } else if (child && typeof child === 'object' && typeof child.type === 'string' && hasTopLevelAwait(child)) {
      return true;
    }
  }
  return false;
}

function patternNames(p, out) {
  if (!p) return out;
  switch (p.type) {
    case 'Identifier': out.push(p.name); break;
    case 'ObjectPattern': for (const prop of p.properties) patternNames(prop.type === 'RestElement' ? prop.argument : prop.value, out); break;
    case 'ArrayPattern': for (const el of p.elements) patternNames(el, out); break;
    case 'RestElement': patternNames(p.argument, out); break;
    case 'AssignmentPattern': patternNames(p.left, out); break;
    default: break;
  }
  return out;
}

function applyEdits(code, edits) {
  edits.sort((a, b) => b[0] - a[0] || b[1] - a[1]);
  let out = code;
  for (const [start, end, text] of edits) out = out.slice(0, start) + text + out.slice(end);
  return out;
}

// Returns { source, isAsync }.
function transform(code) {
  if (!/\b(let|const|class|await)\b/.test(code)) return { source: code, isAsync: false };
  const a = getAcorn();
  if (!a) return { source: code, isAsync: false };
  let ast;
  try {
    ast = a.parse(code, { ecmaVersion: 'latest', sourceType: 'script', allowAwaitOutsideFunction: true, allowHashBang: true });
  } catch {
    return { source: code, isAsync: false }; // let V8 report the syntax error
  }
  const edits = [];
  if (!hasTopLevelAwait(ast)) {
    for (const node of ast.body) {
      if (node.type === 'VariableDeclaration' && node.kind !== 'var') {
        edits.push([node.start, node.start + node.kind.length, 'var']);
      } else if (node.type === 'ClassDeclaration' && node.id) {
        edits.push([node.start, node.start, `var ${node.id.name} = `]);
        edits.push([node.end, node.end, ';']);
      }
    }
    return { source: applyEdits(code, edits), isAsync: false };
  }
  const hoisted = [];
  const prologue = [];
  for (const node of ast.body) {
    if (node.type === 'VariableDeclaration') {
      const assigns = [];
      for (const d of node.declarations) {
        patternNames(d.id, hoisted);
        if (d.init) assigns.push(`(${code.slice(d.id.start, d.id.end)} = ${code.slice(d.init.start, d.init.end)})`);
      }
      edits.push([node.start, node.end, assigns.length ? `void (${assigns.join(', ')});` : ';']);
    } else if (node.type === 'FunctionDeclaration' && node.id) {
      prologue.push(`globalThis[${JSON.stringify(node.id.name)}] = ${node.id.name};`);
    } else if (node.type === 'ClassDeclaration' && node.id) {
      hoisted.push(node.id.name);
      edits.push([node.start, node.start, `${node.id.name} = `]);
      edits.push([node.end, node.end, ';']);
    }
  }
  const last = ast.body[ast.body.length - 1];
  if (last && last.type === 'ExpressionStatement' && !code.trimEnd().endsWith(';')) {
    edits.push([last.start, last.end, `return { value: (${code.slice(last.expression.start, last.expression.end)}) };`]);
  }
  const head = (hoisted.length ? `var ${[...new Set(hoisted)].join(', ')}; ` : '') + `(async () => { ${prologue.join(' ')}`;
  return { source: `${head}${applyEdits(code, edits)}\n})()`, isAsync: true };
}

// ---------------------------------------------------------------------------------------------
// Cells.

let count = 0;
const compiled = new Map(); // source -> { script, isAsync }: the compilation cache
const COMPILE_CACHE_MAX = 1000;
let appliedEnv = { ...process.env };
let interruptCell = null;

function setRequire() {
  globalThis.require = Module.createRequire(path.join(process.cwd(), '[cell]'));
}

function applyEnv(env) {
  if (!env) return;
  for (const [k, v] of Object.entries(env)) if (appliedEnv[k] !== v) process.env[k] = v;
  for (const [k, v] of Object.entries(appliedEnv)) if (!(k in env) && process.env[k] === v) delete process.env[k];
  appliedEnv = env;
}

function applyCwd(cwd) {
  if (!cwd) return;
  try {
    fs.mkdirSync(cwd, { recursive: true });
    process.chdir(cwd);
    setRequire();
  } catch (e) {
    emit('e', `[hutch] cannot change to working directory ${cwd}: ${e.message}\n`);
  }
}

function compile(code) {
  const hit = compiled.get(code);
  if (hit) {
    compiled.delete(code);
    compiled.set(code, hit);
    return [hit, true];
  }
  const { source, isAsync } = transform(code);
  const options = { filename: `<cell-${count}>` };
  if (vm.constants && vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER) {
    options.importModuleDynamically = vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER;
  }
  const entry = { script: new vm.Script(source, options), isAsync };
  if (compiled.size >= COMPILE_CACHE_MAX) compiled.delete(compiled.keys().next().value);
  compiled.set(code, entry);
  return [entry, false];
}

function cleanStack(stack) {
  return String(stack)
    .split('\n')
    .filter((line) => !(/^\s+at /.test(line) && (line.includes(DRIVER) || /[( ]node:/.test(line))))
    .join('\n');
}

function isInterrupt(e) {
  return e && e.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED';
}

function report(e) {
  let ename;
  let evalue;
  let text;
  if (e instanceof Error || (e && typeof e === 'object' && typeof e.stack === 'string')) {
    ename = e.name || 'Error';
    evalue = e.message === undefined ? '' : String(e.message);
    text = cleanStack(e.stack);
  } else {
    ename = 'Error';
    evalue = inspect(e);
    text = `Uncaught ${evalue}`;
  }
  emit('e', `${text}\n`);
  send({ type: 'error', ename, evalue, traceback: text.split('\n') });
}

async function runCell(msg) {
  count += 1;
  applyEnv(msg.env);
  applyCwd(msg.cwd);
  if (msg.clear_cache) compiled.clear();
  let status = 'ok';
  let exitCode = 0;
  let hit = false;
  running = true;
  try {
    const [entry, wasHit] = compile(msg.code || '');
    hit = wasHit;
    let value = entry.script.runInThisContext({ breakOnSigint: true, displayErrors: true });
    if (entry.isAsync) {
      const interrupted = new Promise((_, reject) => {
        interruptCell = () => {
          const err = new Error('Execution interrupted (SIGINT) while awaiting');
          err.code = 'ERR_SCRIPT_EXECUTION_INTERRUPTED';
          reject(err);
        };
      });
      const wrapped = await Promise.race([value, interrupted]);
      value = wrapped ? wrapped.value : undefined;
    }
    if (value !== undefined) {
      send({ type: 'result', data: { 'text/plain': inspect(value) }, execution_count: count });
    }
  } catch (e) {
    if (isInterrupt(e)) {
      status = 'interrupted';
      exitCode = 130;
    } else {
      status = 'error';
      exitCode = 1;
    }
    report(e);
  } finally {
    interruptCell = null;
  }
  running = false;
  send({ type: 'done', status, exit_code: exitCode, execution_count: count, compiled: compiled.size, compile_hit: hit });
}

process.on('SIGINT', () => {
  if (interruptCell) interruptCell();
});
process.on('uncaughtException', (e) => {
  emit('e', `Uncaught ${e && e.stack ? cleanStack(e.stack) : inspect(e)}\n`);
});
process.on('unhandledRejection', (e) => {
  emit('e', `Uncaught (in promise) ${e && e.stack ? cleanStack(e.stack) : inspect(e)}\n`);
});

// ---------------------------------------------------------------------------------------------
// Command loop.

let queue = Promise.resolve();
let inbox = Buffer.alloc(0);
const commands = new net.Socket({ fd: CMD, readable: true, writable: false });
commands.on('data', (chunk) => {
  inbox = inbox.length ? Buffer.concat([inbox, chunk]) : chunk;
  while (inbox.length >= 4) {
    const n = inbox.readUInt32LE(0);
    if (inbox.length < 4 + n) break;
    const body = inbox.subarray(4, 4 + n);
    inbox = inbox.subarray(4 + n);
    let msg;
    try {
      msg = JSON.parse(body.toString('utf8'));
    } catch (e) {
      emit('e', `[hutch] bad command: ${e.message}\n`);
      continue;
    }
    if (msg.type === 'execute') queue = queue.then(() => runCell(msg)).catch((e) => {
      emit('e', `[hutch] kernel error: ${e && e.stack}\n`);
      send({ type: 'done', status: 'error', exit_code: 1, execution_count: count, compiled: compiled.size, compile_hit: false });
    });
    else if (msg.type === 'shutdown') process.exit(0);
  }
});
commands.on('end', () => process.exit(0));
commands.on('error', () => process.exit(0));

process.argv = [process.argv[0]];
setRequire();
send({ type: 'ready', pid: process.pid, language: 'javascript', version: process.version });
