// What the kiosk screen asks and tells the citizen during a call, beside the operator's video:
// identification prompts (card and PIN, PEC code, paper document on the scanner), the outcome, the
// certificate with its marca da bollo, and the printing. docs/protocol.md, "In-call actions".
//
// The PIN is typed on the on-screen keypad and handed only to the kiosk agent on this machine
// (`POST <agent>/v1/pin`); it never goes to the server, is never logged and is forgotten at once.

/** Failure codes after which the citizen tries again on the same prompt. */
const RETRY = {
  pin_incorrect: 'pin',
  no_card: 'pin',
  timeout: 'pin',
  card_error: 'pin',
  wrong_code: 'pec_code',
  not_in_registry: 'pec_cf',
};
/** Failure codes with their own words in the catalogue (others show the server's reason). */
const KNOWN_FAILURES = new Set([
  'pin_incorrect', 'pin_locked', 'no_card', 'timeout', 'card_error', 'untrusted_card', 'card_expired', 'bad_signature',
  'no_fiscal_code', 'wrong_code', 'code_expired', 'too_many_attempts', 'not_in_registry', 'no_pec', 'rejected',
]);
const PIN_MIN = 4;
const PIN_MAX = 8;
const CODE_LENGTH = 6;
const FISCAL_CODE = /^[A-Z0-9]{16}$/;
const KEYBOARD_ROWS = ['1234567890', 'QWERTYUIOP', 'ASDFGHJKL', 'ZXCVBNM'];
/** How long "identity verified" and a final failure stay on screen. */
const VERIFIED_S = 8;
const FAILED_S = 20;

/**
 * The in-call prompts and notices of the kiosk screen.
 */
export class KioskInCall {
  /**
   * @param {object} o
   * @param {() => import('../lib/sportello.js').SportelloClient | null} o.client
   * @param {() => string | null} o.callId the kiosk's current call
   * @param {string} o.agentUrl the local kiosk agent, e.g. `http://127.0.0.1:7480`
   * @param {(el: Element, key: string, vars?: object, single?: boolean) => void} o.setText
   * @param {(key: string, vars?: object) => string} o.t the chosen language's text
   * @param {(text: string) => void} o.note the page's log (never given a PIN, a code or a fiscal code)
   * @param {(text: string) => void} o.say the page's live region
   * @param {object} o.ui the page's state mirrored on the DOM (lib/reflect.js): assign, never mutate
   */
  constructor(o) {
    this.o = o;
    /** `{kind, method, sentTo, error: {key, vars} | null, received}` or null. */
    this.prompt = null;
    /** The digits typed on the keypad (a PIN or a PEC code). Never logged, never kept. */
    this.entry = '';
    this.busy = false;
    this.hideTimer = null;
    this.$ = (id) => document.getElementById(id);
    this.ui = o.ui;
    this.ui.prompt = null;
    /** Every prompt shown, in order. */
    this.ui.prompts = [];
    this.ui.identity = null;
    this.ui.notices = { certificate: null, print: null };
    /** What the agent calls returned (for the tests: "ok" or the error's name). */
    this.ui.agent = [];
    this.build();
  }

  // ---- Building -----------------------------------------------------------------------------------

  build() {
    const $ = this.$;
    const keys = ['1', '2', '3', '4', '5', '6', '7', '8', '9', 'del', '0', 'ok'];
    for (const k of keys) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = `key key-${/\d/.test(k) ? 'digit' : k}`;
      b.dataset.key = k;
      if (/\d/.test(k)) b.textContent = k;
      else {
        b.dataset.i18nKey = k === 'del' ? 'incall.key.delete' : 'incall.key.ok';
        b.dataset.i18nSingle = '';
      }
      b.addEventListener('click', () => this.press(k));
      $('keypad').append(b);
    }
    for (const row of KEYBOARD_ROWS) {
      const r = document.createElement('div');
      r.className = 'keyboard-row';
      for (const ch of row) {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'key key-char';
        b.textContent = ch;
        b.addEventListener('click', () => this.typeChar(ch));
        r.append(b);
      }
      if (row === KEYBOARD_ROWS.at(-1)) {
        const del = document.createElement('button');
        del.type = 'button';
        del.className = 'key key-del';
        del.dataset.i18nKey = 'incall.key.delete';
        del.dataset.i18nSingle = '';
        del.addEventListener('click', () => this.typeChar(null));
        r.append(del);
      }
      $('keyboard').append(r);
    }
    $('prompt-cf').addEventListener('input', () => {
      const el = $('prompt-cf');
      el.value = el.value.toUpperCase().replace(/[^A-Z0-9]/g, '').slice(0, 16);
      this.renderCf();
    });
    $('prompt-cf').addEventListener('keydown', (e) => {
      if (e.key === 'Enter') this.sendFiscalCode();
    });
    $('pec-send').addEventListener('click', () => this.sendFiscalCode());
    $('scan-done').addEventListener('click', () => this.scanDone());
    // Keyboard users (and a kiosk with a hardware keypad) type digits directly.
    document.addEventListener('keydown', (e) => this.onKey(e));
  }

  /** Re-renders the keys' words (after a language change). */
  renderKeys() {
    for (const b of document.querySelectorAll('.key[data-i18n-key]')) {
      this.o.setText(b, b.dataset.i18nKey, {}, true);
    }
  }

  // ---- Events -------------------------------------------------------------------------------------

  wire(client) {
    const mine = (e) => e.call_id === this.o.callId();
    client.on('identity.progress', (e) => mine(e) && this.onProgress(e));
    client.on('identity.verified', (e) => mine(e) && this.onVerified(e));
    client.on('identity.failed', (e) => mine(e) && this.onFailed(e));
    client.on('certificate.issued', (e) => mine(e) && this.onIssued(e));
    client.on('print.update', (e) => (mine(e) || e.document_id === this.ui.notices.certificate?.document_id) && this.onPrint(e));
  }

  onProgress(e) {
    if (e.step === 'requested') {
      this.ui.identity = 'pending';
      const kind = { cie: 'pin', cns: 'pin', pec: 'pec_cf', document: 'scan' }[e.method];
      if (!kind) return;
      this.$('prompt-cf').value = '';
      this.setPrompt({ kind, method: e.method });
      this.o.say(this.o.t(this.titleKey()));
    } else if (e.step === 'pec_sent') {
      if (this.prompt?.kind === 'pec_code' || this.prompt?.kind === 'pec_wait') {
        this.prompt.sentTo = e.sent_to ?? this.prompt.sentTo;
        this.render();
      } else {
        this.setPrompt({ kind: 'pec_code', method: 'pec', sentTo: e.sent_to ?? '' });
      }
    } else if (e.step === 'scan_received') {
      this.setPrompt({ kind: 'scan_wait', method: 'document', received: true });
    }
  }

  onVerified(e) {
    this.ui.identity = 'verified';
    this.setPrompt({ kind: 'verified', method: e.method });
    this.o.say(this.o.t('incall.verified.title'));
    this.hideLater(VERIFIED_S);
  }

  onFailed(e) {
    this.ui.identity = 'failed';
    const code = e.code ?? null;
    const error = this.failure(e);
    const retry = RETRY[code];
    const method = e.method ?? this.prompt?.method;
    // A wrong PIN or code, a missing card, an unknown fiscal code: the citizen tries again.
    const canRetry = retry && !(retry === 'pin' && !['cie', 'cns'].includes(method))
      && !(code === 'wrong_code' && e.attempts_left === 0)
      && !(code === 'pin_incorrect' && e.attempts_left === 0);
    if (canRetry) {
      this.setPrompt({ kind: retry, method, sentTo: this.prompt?.sentTo ?? null, error });
    } else {
      this.setPrompt({ kind: 'failed', method, error });
      this.hideLater(FAILED_S);
    }
    this.o.say(this.o.t(error.key, error.vars));
  }

  /** The words of a failure: the catalogue's for a known code, else the server's reason. */
  failure(e) {
    const vars = { reason: e.reason ?? '', n: e.attempts_left ?? '' };
    if (e.code && KNOWN_FAILURES.has(e.code)) {
      const withAttempts = e.attempts_left !== undefined && e.attempts_left !== null && `incall.failed.${e.code}_attempts`;
      return { key: withAttempts && this.o.t(withAttempts) !== withAttempts ? withAttempts : `incall.failed.${e.code}`, vars };
    }
    return { key: 'incall.failed.other', vars };
  }

  onIssued(e) {
    this.ui.notices = { certificate: { document_id: e.document_id, kind: e.kind, bollo_due: Boolean(e.bollo_due), pages: e.pages }, print: null };
    this.renderNotices();
    this.o.say(`${this.o.t('incall.cert.ready')}: ${this.o.t(`cert.kind.${e.kind}`)}. ${e.bollo_due ? this.o.t('incall.cert.bollo') : ''}`.trim());
  }

  onPrint(e) {
    this.ui.notices = { ...this.ui.notices, print: { state: e.state, job_id: e.job_id, document_id: e.document_id } };
    this.renderNotices();
    this.o.say(this.o.t(`incall.print.${e.state}`));
  }

  // ---- Citizen's actions ------------------------------------------------------------------------

  press(k) {
    const p = this.prompt;
    if (!p || (p.kind !== 'pin' && p.kind !== 'pec_code') || this.busy) return;
    const max = p.kind === 'pin' ? PIN_MAX : CODE_LENGTH;
    if (k === 'del') this.entry = this.entry.slice(0, -1);
    else if (k === 'ok') {
      this.submitEntry();
      return;
    } else if (this.entry.length < max) this.entry += k;
    this.renderEntry();
  }

  onKey(e) {
    const p = this.prompt;
    if (!p || e.ctrlKey || e.metaKey || e.altKey || e.target?.tagName === 'INPUT') return;
    if (p.kind !== 'pin' && p.kind !== 'pec_code') return;
    if (/^\d$/.test(e.key)) this.press(e.key);
    else if (e.key === 'Backspace') this.press('del');
    else if (e.key === 'Enter' && e.target?.tagName !== 'BUTTON') this.press('ok');
    else return;
    e.preventDefault();
  }

  entryComplete() {
    const p = this.prompt;
    if (p?.kind === 'pin') return this.entry.length >= PIN_MIN;
    if (p?.kind === 'pec_code') return this.entry.length === CODE_LENGTH;
    return false;
  }

  async submitEntry() {
    const p = this.prompt;
    const callId = this.o.callId();
    if (!this.entryComplete() || !callId) return;
    const digits = this.entry;
    this.entry = '';
    if (p.kind === 'pin') {
      this.setPrompt({ kind: 'pin_wait', method: p.method });
      try {
        await this.agent('/v1/pin', { call_id: callId, pin: digits });
      } catch {
        this.setPrompt({ kind: 'pin', method: p.method, error: { key: 'incall.pin.agent_error', vars: {} } });
      }
      return;
    }
    this.setPrompt({ kind: 'pec_wait', method: 'pec', sentTo: p.sentTo });
    try {
      await this.o.client().request('identity.pec_code', { call_id: callId, code: digits });
      this.o.note('identity.pec_code sent');
    } catch (e) {
      this.o.note(`identity.pec_code failed: ${e.code}`);
      this.setPrompt({ kind: 'pec_code', method: 'pec', sentTo: p.sentTo, error: { key: this.replyKey('incall.code.error', e.code), vars: {} } });
    }
  }

  typeChar(ch) {
    const el = this.$('prompt-cf');
    if (ch === null) el.value = el.value.slice(0, -1);
    else if (el.value.length < 16) el.value += ch;
    this.renderCf();
  }

  async sendFiscalCode() {
    const callId = this.o.callId();
    const cf = this.$('prompt-cf').value.trim().toUpperCase();
    if (this.prompt?.kind !== 'pec_cf' || this.busy || !callId) return;
    if (!FISCAL_CODE.test(cf)) {
      this.prompt.error = { key: 'incall.pec.bad_cf', vars: {} };
      this.render();
      return;
    }
    this.busy = true;
    this.prompt.error = null;
    this.render();
    try {
      const reply = await this.o.client().request('identity.pec_start', { call_id: callId, fiscal_code: cf });
      this.o.note('identity.pec_start ok');
      this.$('prompt-cf').value = '';
      this.busy = false;
      if (this.prompt?.kind === 'pec_cf') this.setPrompt({ kind: 'pec_code', method: 'pec', sentTo: reply.sent_to ?? '' });
    } catch (e) {
      this.busy = false;
      this.o.note(`identity.pec_start failed: ${e.code}`);
      if (this.prompt?.kind === 'pec_cf') {
        this.prompt.error = { key: this.replyKey('incall.pec.error', e.code), vars: {} };
        this.render();
      }
    }
  }

  /** `prefix.<code>` when the catalogue has it, else `prefix.other`. */
  replyKey(prefix, code) {
    const key = `${prefix}.${code}`;
    return this.o.t(key) === key ? `${prefix}.other` : key;
  }

  async scanDone() {
    const callId = this.o.callId();
    if (this.prompt?.kind !== 'scan' || !callId) return;
    this.setPrompt({ kind: 'scan_wait', method: 'document', received: false });
    // The agent also scans by itself after a while: a failure here changes nothing for the citizen.
    await this.agent('/v1/scan', { call_id: callId }).catch(() => {});
  }

  /** POSTs JSON to the local kiosk agent; rejects on a network error or an HTTP error. */
  async agent(path, body) {
    try {
      const res = await fetch(`${this.o.agentUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10000),
      });
      this.ui.agent = [...this.ui.agent, `${path} ${res.status}`].slice(-32);
      this.o.note(`agent ${path}: HTTP ${res.status}`);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
    } catch (e) {
      if (!/^HTTP/.test(e.message)) {
        this.ui.agent = [...this.ui.agent, `${path} ${e.name}`].slice(-32);
        this.o.note(`agent ${path} unreachable: ${e.name}`);
      }
      throw e;
    }
  }

  // ---- State ------------------------------------------------------------------------------------

  setPrompt(p) {
    clearTimeout(this.hideTimer);
    this.hideTimer = null;
    if (!p || p.kind !== this.prompt?.kind) this.entry = '';
    this.busy = false;
    this.prompt = p ? { error: null, ...p } : null;
    this.ui.prompt = p?.kind ?? null;
    if (p) {
      this.ui.prompts = [...this.ui.prompts, p.kind].slice(-32);
      this.o.note(`prompt ${p.kind}`);
    }
    this.render();
    // Keyboard and switch users land on the prompt's first control.
    const focus = { pin: '#prompt-title', pec_code: '#prompt-title', pec_cf: '#prompt-cf', scan: '#scan-done' }[p?.kind];
    if (focus) document.querySelector(focus)?.focus({ preventScroll: true });
  }

  hideLater(seconds) {
    clearTimeout(this.hideTimer);
    this.hideTimer = setTimeout(() => {
      this.hideTimer = null;
      if (this.prompt?.kind === 'verified' || this.prompt?.kind === 'failed') this.setPrompt(null);
    }, seconds * 1000);
  }

  /** The call ended (or left this kiosk): everything personal goes. */
  clear() {
    clearTimeout(this.hideTimer);
    this.hideTimer = null;
    this.entry = '';
    this.busy = false;
    this.prompt = null;
    this.$('prompt-cf').value = '';
    this.ui.prompt = null;
    this.ui.identity = null;
    this.ui.notices = { certificate: null, print: null };
    this.render();
  }

  // ---- Rendering ----------------------------------------------------------------------------------

  titleKey() {
    const p = this.prompt;
    return {
      pin: 'incall.pin.title',
      pin_wait: 'incall.pin.checking',
      pec_cf: 'incall.pec.title',
      pec_code: 'incall.pec.code_title',
      pec_wait: 'incall.pec.checking',
      scan: 'incall.scan.title',
      scan_wait: p?.received ? 'incall.scan.received' : 'incall.scan.wait',
      verified: 'incall.verified.title',
      failed: 'incall.failed.title',
    }[p?.kind];
  }

  render() {
    const $ = this.$;
    const p = this.prompt;
    $('prompt').hidden = !p;
    $('prompt').dataset.kind = p?.kind ?? '';
    if (p) {
      this.o.setText($('prompt-title'), this.titleKey());
      const textKey = {
        pin: 'incall.pin.text',
        pin_wait: 'incall.pin.wait_text',
        pec_cf: 'incall.pec.cf_prompt',
        pec_code: 'incall.pec.code_prompt',
        pec_wait: 'incall.pec.wait_text',
        scan: 'incall.scan.text',
        scan_wait: 'incall.scan.wait_text',
        verified: p.method === 'document' ? 'incall.verified.take_document' : 'incall.verified.text',
        failed: 'incall.failed.text',
      }[p.kind];
      this.o.setText($('prompt-text'), textKey, { sent_to: p.sentTo ?? '' });
      const err = $('prompt-error');
      err.hidden = !p.error;
      if (p.error) this.o.setText(err, p.error.key, p.error.vars);
      else err.replaceChildren();
    }
    const keypad = p?.kind === 'pin' || p?.kind === 'pec_code';
    $('keypad').hidden = !keypad;
    $('prompt-entry').hidden = !keypad;
    const cf = p?.kind === 'pec_cf';
    $('prompt-cf-label').hidden = !cf;
    $('cf-row').hidden = !cf;
    $('keyboard').hidden = !cf;
    $('scan-done').hidden = p?.kind !== 'scan';
    this.renderKeys();
    this.renderEntry();
    this.renderCf();
    this.renderNotices();
  }

  renderEntry() {
    const p = this.prompt;
    const el = this.$('prompt-entry');
    if (p?.kind !== 'pin' && p?.kind !== 'pec_code') return;
    const n = this.entry.length;
    // A PIN shows only dots; a PEC code shows its digits (it is spent after one use).
    const shown = p.kind === 'pin' ? '●'.repeat(n) : this.entry;
    const slots = p.kind === 'pin' ? Math.max(PIN_MIN, n) : CODE_LENGTH;
    el.textContent = `${shown}${'_'.repeat(Math.max(0, slots - n))}`.split('').join(' ');
    el.setAttribute('aria-label', this.o.t(p.kind === 'pin' ? 'incall.pin.entered' : 'incall.pec.code_entered', { n }));
    const ok = this.$('keypad').querySelector('[data-key="ok"]');
    ok.disabled = !this.entryComplete() || this.busy;
  }

  renderCf() {
    const send = this.$('pec-send');
    const value = this.$('prompt-cf').value;
    send.disabled = this.busy || value.length !== 16;
    if (this.prompt?.kind === 'pec_cf') this.o.setText(send, this.busy ? 'incall.pec.sending' : 'incall.pec.send');
  }

  renderNotices() {
    const $ = this.$;
    const cert = this.ui.notices.certificate;
    const print = this.ui.notices.print;
    $('notice-cert').hidden = !cert;
    if (cert) {
      this.o.setText($('notice-cert-title'), 'incall.cert.ready');
      this.o.setText($('notice-cert-kind'), `cert.kind.${cert.kind}`);
      $('notice-bollo').hidden = !cert.bollo_due;
      if (cert.bollo_due) this.o.setText($('notice-bollo'), 'incall.cert.bollo');
    }
    $('notice-print').hidden = !print;
    if (print) {
      $('notice-print').dataset.state = print.state;
      this.o.setText($('notice-print-text'), `incall.print.${print.state}`);
    }
    $('side').hidden = !this.prompt && !cert && !print;
    // Typing needs room: the keypad or keyboard takes more of the screen than the video then.
    $('side').classList.toggle('wide', ['pin', 'pec_code', 'pec_cf'].includes(this.prompt?.kind));
  }
}
