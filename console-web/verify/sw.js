// Keeps the verification page working offline: the page's files are served from the cache first, the
// trust list from the network first with the cached copy as fallback.
const CACHE = 'sportello-verify-v2';
const FILES = [
  './', './index.html', './verify.css', './app.js', './stamp.js',
  './vendor/barcode-detector.js', './vendor/zxing_reader.wasm',
];
const TRUST = '/.well-known/sportello/trust-list.json';

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (e) => {
  e.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (url.pathname === TRUST) {
    e.respondWith(
      fetch(e.request)
        .then((r) => { const copy = r.clone(); caches.open(CACHE).then((c) => c.put(TRUST, copy)); return r; })
        // Offline: the cached copy, marked so that the page says how old it is.
        .catch(() => caches.match(TRUST).then((hit) => {
          if (!hit) return Response.error();
          const headers = new Headers(hit.headers);
          headers.set('x-sportello-offline', '1');
          return new Response(hit.body, { status: hit.status, headers });
        })),
    );
    return;
  }
  e.respondWith(caches.match(e.request).then((hit) => hit || fetch(e.request)));
});
