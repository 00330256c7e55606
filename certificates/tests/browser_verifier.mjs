// Runs the /verify/ page's verification module under Node: argv = stamp file, trust list file, now (ms).
// Prints the verified certificate as JSON, or "ERROR <code>" and exits 1.
if (!globalThis.crypto || !globalThis.crypto.subtle) globalThis.crypto = (await import('node:crypto')).webcrypto;
const { readFileSync } = await import('node:fs');
const [, , stampPath, trustPath, now, modulePath] = process.argv;
const { verifyStamp } = await import(modulePath);
try {
  const r = await verifyStamp(readFileSync(stampPath, 'utf8'), JSON.parse(readFileSync(trustPath, 'utf8')), Number(now));
  console.log(JSON.stringify(r));
} catch (e) {
  console.log(`ERROR ${e.code || e.message}`);
  process.exit(1);
}
