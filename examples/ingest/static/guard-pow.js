// guard-pow.js: include it before a tracking script or on a sign-up form, then call
// guardProve() once; it resolves when this server vouched for the visitor's address.
// Needs /challenge, /verify and /pow.js served by the same origin (examples/ingest).
"use strict";
async function guardProve() {
  const started = performance.now();
  const ch = await (await fetch("/challenge")).json();
  const counter = await new Promise((resolve, reject) => {
    const worker = new Worker("/pow.js");
    worker.onmessage = (e) => { worker.terminate(); resolve(e.data.counter); };
    worker.onerror = reject;
    worker.postMessage(ch);
  });
  const r = await fetch("/verify", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ challenge: ch.challenge, counter }),
  });
  return { status: r.status, ms: Math.round(performance.now() - started) };
}
