// The in-call actions of the operator console ("pratica" of a booth): identifying the citizen
// (CIE, CNS, PEC or a scanned paper document compared with the live video), issuing certificates
// (kind, person, date, reason, bollo or exemption, with a PDF preview) and printing them on the
// kiosk's printer with the jobs' live state. docs/protocol.md, "In-call actions".
//
// Each call has its own state (`call.incall`) and its own panel (`.casefile`), shown only while its
// booth is selected, so nothing typed for one booth can go to another. A reload (state.sync) starts
// the panels afresh.

/** Identification methods, in the order of the buttons. */
export const METHODS = ['cie', 'cns', 'pec', 'document'];
/** Registry certificates (DPR 223/1989), then civil-status ones (exempt from bollo by law). */
export const REGISTRY_KINDS = [
  'residenza', 'residenza_alla_data', 'residenza_aire', 'stato_famiglia', 'stato_famiglia_parentela',
  'stato_famiglia_alla_data', 'stato_famiglia_decesso', 'cittadinanza', 'stato_libero', 'stato_civile',
  'esistenza_in_vita', 'cumulativo_famiglia', 'contestuale', 'residenza_provenienza', 'estremi_carta_identita',
  'stato_famiglia_aire', 'residenza_convivenza', 'contratto_convivenza', 'anagrafico_nascita', 'anagrafico_matrimonio',
];
export const CIVIL_KINDS = ['nascita', 'matrimonio', 'unione_civile', 'morte'];
/** Kinds that need `as_of` (and a reason). */
const AS_OF_KINDS = new Set(['residenza_alla_data', 'stato_famiglia_alla_data']);
/** Past situations (art. 35 c. 4 DPR 223/1989): a reason is always required. */
const PAST_KINDS = new Set([...AS_OF_KINDS, 'stato_famiglia_decesso']);
/** Uses and exemptions (codes of certificates/data/exemptions.json). */
export const EXEMPTIONS = [
  'b1', 'b3', 'b5', 'b8', 'b8bis', 'b9', 'b11', 'b13', 'l184_1983', 'b16', 'b21bis', 'b24', 'b27bis', 'l74_1987',
  'dpr115_2002', 'l28_1999', 'cause_giudiziarie', 'immigrazione',
];
/** Uses of the table that leave the bollo due (their certificate takes a marca). */
const BOLLO_DUE_USES = new Set(['cause_giudiziarie', 'immigrazione']);
/** Identity document types for a paper identification (sent as `document_type`). */
const DOCUMENT_TYPES = ['carta_identita', 'passaporto', 'patente', 'altro'];
/** Printer reasons with words in the catalogue (others are shown as the printer says them). */
const PRINT_DETAILS = new Set(['media-empty', 'media-jam', 'offline', 'toner-empty', 'door-open', 'paused', 'timeout', 'cups-unavailable']);
/** The parts an operator may choose for a contestuale certificate (none chosen: every part). */
export const CONTESTUALE_PARTS = ['nascita', 'residenza', 'cittadinanza', 'stato_civile', 'esistenza_in_vita'];
/** A marca da bollo's identifier: 14 digits. */
const MARCA_ID = /^\d{14}$/;
/** A fiscal code: 16 letters and digits (omocodia letters included). */
const FISCAL_CODE = /^[A-Z0-9]{16}$/;

/** `YYYY-MM-DD` as `DD/MM/YYYY`. */
function italianDate(iso) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso ?? '');
  return m ? `${m[3]}/${m[2]}/${m[1]}` : (iso ?? '');
}

/** Today as `YYYY-MM-DD` in local time. */
function today() {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

let nextPanel = 0;

/**
 * The in-call panels of every call of the console.
 */
export class InCall {
  /**
   * @param {object} o
   * @param {HTMLElement} o.container where the panels go
   * @param {HTMLElement} o.empty shown when the selected booth has no call
   * @param {import('../lib/i18n.js').Bilingual} o.text
   * @param {() => import('../lib/sportello.js').SportelloClient | null} o.client
   * @param {(text: string) => void} o.note the page's log
   * @param {(text: string) => void} o.say the page's live region
   * @param {(call: object) => void} o.changed called when a call's identity changes (tiles show it)
   */
  constructor(o) {
    this.o = o;
    this.text = o.text;
    /** Calls by id (the console's own call objects, each with `incall` and `panel`). */
    this.calls = new Map();
    this.selectedId = null;
  }

  t(key, vars) {
    return this.text.t(key, vars);
  }

  set(el, key, vars) {
    return this.text.set(el, key, vars);
  }

  /** Subscribes to the in-call events of a (new) connection. */
  wire(client) {
    client.on('identity.progress', (e) => this.onProgress(e));
    client.on('identity.verified', (e) => this.onVerified(e));
    client.on('identity.failed', (e) => this.onFailed(e));
    client.on('print.update', (e) => this.onPrintUpdate(e));
  }

  // ---- Calls ------------------------------------------------------------------------------------

  /** A call appeared: its state and its (hidden) panel. */
  add(call) {
    if (call.incall) return;
    call.incall = {
      /** none · pending · verified · failed */
      identity: { status: 'none', method: null, step: null, sentTo: null, subject: null, reason: null, attemptsLeft: null },
      /** The scan of a paper identification: `{scan_id, url, blobUrl, error}`. */
      scan: null,
      /** Issued documents, newest last: the reply of certificate.issue plus `blobUrl`, `previewError`. */
      docs: [],
      /** Print jobs by id: `{job_id, document_id, copies, state, detail, n}`. */
      jobs: new Map(),
      /** A certificate.issue in flight. */
      issuing: false,
    };
    this.calls.set(call.call_id, call);
    this.build(call);
    this.render(call);
  }

  /** A call is gone: its panel and its object URLs go too. */
  remove(call) {
    if (!call?.incall) return;
    const s = call.incall;
    if (s.scan?.blobUrl) URL.revokeObjectURL(s.scan.blobUrl);
    for (const d of s.docs) if (d.blobUrl) URL.revokeObjectURL(d.blobUrl);
    call.panel?.remove();
    call.panel = null;
    this.calls.delete(call.call_id);
    this.showSelected();
  }

  /** Shows the panel of the selected booth's call (or the "no call" hint). */
  select(callId) {
    this.selectedId = callId ?? null;
    this.showSelected();
  }

  showSelected() {
    for (const c of this.calls.values()) {
      if (c.panel) c.panel.hidden = c.call_id !== this.selectedId;
    }
    this.o.empty.hidden = this.calls.has(this.selectedId);
    const c = this.calls.get(this.selectedId);
    if (c) this.render(c);
  }

  /** Whether the call is in conversation (the in-call requests are allowed). */
  static live(call) {
    return call.state === 'connected' || call.state === 'on_hold';
  }

  /**
   * Where a call's case stands, mirrored on its panel's `data-summary`: the identification's
   * status (not the citizen's data, which the panel shows), the scan, the documents with their
   * preview, the print jobs.
   */
  summary(callId) {
    const c = this.calls.get(callId);
    if (!c?.incall) return null;
    const s = c.incall;
    const { subject: _subject, ...identity } = s.identity;
    return {
      identity,
      scan: s.scan && { scan_id: s.scan.scan_id, loaded: Boolean(s.scan.blobUrl), error: s.scan.error ?? null },
      docs: s.docs.map((d) => ({
        document_id: d.document_id, kind: d.kind, pages: d.pages, bollo_due: d.bollo_due, valid_until: d.valid_until ?? null, marca_id: d.marca_id ?? null,
        preview: Boolean(d.blobUrl), previewBytes: d.previewBytes ?? 0, previewType: d.previewType ?? null, previewError: d.previewError ?? null,
      })),
      jobs: [...s.jobs.values()].map((j) => ({ ...j })),
      draft: s.draft ?? null,
    };
  }

  // ---- Building -----------------------------------------------------------------------------------

  /** Builds a call's panel once; `render` fills it. */
  build(call) {
    nextPanel += 1;
    const p = `case-${nextPanel}`;
    const el = document.createElement('section');
    el.className = 'casefile';
    el.id = p;
    el.dataset.callId = call.call_id;
    el.hidden = true;
    el.setAttribute('aria-labelledby', `${p}-title`);
    const option = (value, key) => `<option value="${value}" data-i18n-option="${key}"></option>`;
    el.innerHTML = `
      <h3 id="${p}-title" class="case-title"></h3>
      <p class="case-ended banner" hidden></p>
      <div class="panels">
        <section class="panel panel-id" aria-labelledby="${p}-id-title">
          <h4 id="${p}-id-title" data-i18n="console.id.title"></h4>
          <p class="id-status" role="status" aria-live="polite"></p>
          <dl class="subject" hidden>
            <div><dt data-i18n="console.id.name"></dt><dd class="subject-name"></dd></div>
            <div><dt data-i18n="console.id.fiscal_code"></dt><dd class="subject-cf"></dd></div>
            <div><dt data-i18n="console.id.birth_date"></dt><dd class="subject-birth"></dd></div>
            <div><dt data-i18n="console.id.method"></dt><dd class="subject-method"></dd></div>
          </dl>
          <div class="methods" role="group" aria-labelledby="${p}-methods-label">
            <p id="${p}-methods-label" class="label" data-i18n="console.id.choose"></p>
            ${METHODS.map((m) => `<button type="button" class="btn act-method" data-method="${m}" data-i18n="console.id.method.${m}" aria-describedby="${p}-title"></button>`).join('')}
          </div>
          <div class="scan" hidden>
            <p class="scan-error error" role="alert" hidden></p>
            <button type="button" class="btn act-scan-retry" data-i18n="console.id.scan_retry" hidden></button>
            <div class="compare">
              <figure>
                <img class="scan-img" alt="">
                <figcaption data-i18n="console.id.scan"></figcaption>
              </figure>
              <figure>
                <video class="scan-live" muted autoplay playsinline></video>
                <figcaption data-i18n="console.id.live"></figcaption>
              </figure>
            </div>
            <form class="form confirm-form" novalidate aria-labelledby="${p}-confirm-title">
              <p id="${p}-confirm-title" class="form-title" data-i18n="console.id.confirm_title"></p>
              <label for="${p}-cf" data-i18n="console.id.fiscal_code"></label>
              <input id="${p}-cf" class="confirm-cf" name="fiscal_code" autocomplete="off" spellcheck="false" maxlength="16" required>
              <label for="${p}-doctype" data-i18n="console.id.document_type"></label>
              <select id="${p}-doctype" class="confirm-type" name="document_type">
                ${DOCUMENT_TYPES.map((d) => option(d, `console.id.doctype.${d}`)).join('')}
              </select>
              <label for="${p}-doctype-other" class="other-label" data-i18n="console.id.document_type_other" hidden></label>
              <input id="${p}-doctype-other" class="confirm-type-other" autocomplete="off" maxlength="100" hidden>
              <label for="${p}-docnum" data-i18n="console.id.document_number"></label>
              <input id="${p}-docnum" class="confirm-number" name="document_number" autocomplete="off" spellcheck="false" maxlength="64" required>
              <p class="confirm-error error" role="alert" hidden></p>
              <button type="submit" class="btn btn-ok act-confirm" data-i18n="console.id.confirm"></button>
            </form>
          </div>
          <div class="reject" hidden>
            <label for="${p}-reject" data-i18n="console.id.reject_reason"></label>
            <input id="${p}-reject" class="reject-reason" autocomplete="off" maxlength="200">
            <p class="reject-error error" role="alert" hidden></p>
            <button type="button" class="btn btn-danger act-reject"></button>
          </div>
        </section>

        <section class="panel panel-cert" aria-labelledby="${p}-cert-title">
          <h4 id="${p}-cert-title" data-i18n="console.cert.title"></h4>
          <p id="${p}-cert-locked" class="cert-locked banner"></p>
          <form class="form cert-form" novalidate aria-labelledby="${p}-cert-title">
            <fieldset class="cert-fields" aria-describedby="${p}-cert-locked">
              <label for="${p}-kind" data-i18n="console.cert.kind"></label>
              <select id="${p}-kind" class="cert-kind" name="kind">
                <optgroup data-i18n-label="console.cert.group.registry">${REGISTRY_KINDS.map((k) => option(k, `cert.kind.${k}`)).join('')}</optgroup>
                <optgroup data-i18n-label="console.cert.group.civil">${CIVIL_KINDS.map((k) => option(k, `cert.kind.${k}`)).join('')}</optgroup>
              </select>
              <label for="${p}-for" data-i18n="console.cert.fiscal_code"></label>
              <input id="${p}-for" class="cert-cf" name="fiscal_code" autocomplete="off" spellcheck="false" maxlength="16" aria-describedby="${p}-for-hint">
              <p id="${p}-for-hint" class="hint cert-for-hint"></p>
              <label for="${p}-asof" class="asof-label" data-i18n="console.cert.as_of"></label>
              <input id="${p}-asof" class="cert-asof" name="as_of" type="date">
              <label for="${p}-reason" class="reason-label"></label>
              <input id="${p}-reason" class="cert-reason" name="reason" autocomplete="off" maxlength="200">
              <fieldset class="cert-parts" hidden>
                <legend data-i18n="console.cert.parts"></legend>
                <p class="hint" data-i18n="console.cert.parts_hint"></p>
                ${CONTESTUALE_PARTS.map((x) => `<div class="choice"><input type="checkbox" id="${p}-part-${x}" class="cert-part" value="${x}"><label for="${p}-part-${x}" data-i18n="cert.part.${x}"></label></div>`).join('')}
              </fieldset>
              <fieldset class="usage">
                <legend data-i18n="console.cert.usage"></legend>
                <p class="usage-exempt-law hint" data-i18n="console.cert.exempt_by_law" hidden></p>
                <div class="choice">
                  <input type="radio" id="${p}-bollo" name="usage" value="bollo" class="usage-bollo" checked>
                  <label for="${p}-bollo" data-i18n="console.cert.bollo"></label>
                </div>
                <div class="marca">
                  <label for="${p}-marca-id" data-i18n="console.cert.marca_id"></label>
                  <input id="${p}-marca-id" class="cert-marca-id" name="marca_id" inputmode="numeric" autocomplete="off" maxlength="14" pattern="\\d{14}" aria-describedby="${p}-marca-hint">
                  <label for="${p}-marca-date" data-i18n="console.cert.marca_date"></label>
                  <input id="${p}-marca-date" class="cert-marca-date" name="marca_date" type="date">
                  <p id="${p}-marca-hint" class="hint" data-i18n="console.cert.marca_hint"></p>
                </div>
                <div class="choice">
                  <input type="radio" id="${p}-exempt" name="usage" value="exemption" class="usage-exempt">
                  <label for="${p}-exempt" data-i18n="console.cert.exempt"></label>
                </div>
                <label for="${p}-exemption" class="visually-hidden" data-i18n="console.cert.exemption"></label>
                <select id="${p}-exemption" class="cert-exemption" name="exemption">
                  ${EXEMPTIONS.map((x) => option(x, `cert.exemption.${x}`)).join('')}
                </select>
              </fieldset>
              <p class="cert-error error" role="alert" hidden></p>
              <div class="cert-actions">
                <button type="button" class="btn act-preview" data-i18n="console.cert.preview"></button>
                <button type="submit" class="btn btn-primary act-issue" data-i18n="console.cert.issue"></button>
              </div>
            </fieldset>
          </form>
          <p class="cert-status" role="status" aria-live="polite"></p>
          <div class="cert-draft" hidden>
            <p class="hint" data-i18n="console.cert.draft_hint"></p>
            <iframe class="cert-draft-frame"></iframe>
          </div>
        </section>

        <section class="panel panel-docs" aria-labelledby="${p}-docs-title">
          <h4 id="${p}-docs-title" data-i18n="console.print.title"></h4>
          <p class="docs-empty hint" data-i18n="console.print.none"></p>
          <p class="print-error error" role="alert" hidden></p>
          <ul class="docs"></ul>
        </section>
      </div>`;
    call.panel = el;
    call.panelId = p;
    this.fillText(el);
    this.o.container.append(el);
    this.listen(call);
  }

  /** Fills the catalogue text of a new part of a panel. */
  fillText(root) {
    for (const n of root.querySelectorAll('[data-i18n]')) this.set(n, n.dataset.i18n);
    for (const n of root.querySelectorAll('[data-i18n-option]')) n.textContent = this.t(n.dataset.i18nOption);
    for (const n of root.querySelectorAll('[data-i18n-label]')) n.label = this.t(n.dataset.i18nLabel);
  }

  listen(call) {
    const q = (sel) => call.panel.querySelector(sel);
    for (const b of call.panel.querySelectorAll('.act-method')) {
      b.addEventListener('click', () => this.requestIdentity(call, b.dataset.method));
    }
    q('.act-reject').addEventListener('click', () => this.reject(call));
    q('.act-scan-retry').addEventListener('click', () => this.loadScan(call));
    q('.confirm-type').addEventListener('change', () => this.renderDocType(call));
    q('.confirm-cf').addEventListener('input', (e) => { e.target.value = e.target.value.toUpperCase(); });
    q('.confirm-form').addEventListener('submit', (e) => { e.preventDefault(); this.confirm(call); });
    q('.cert-cf').addEventListener('input', (e) => {
      e.target.value = e.target.value.toUpperCase();
      this.renderCertForm(call);
    });
    for (const sel of ['.cert-kind', '.usage-bollo', '.usage-exempt']) {
      q(sel).addEventListener('change', () => this.renderCertForm(call));
    }
    q('.cert-exemption').addEventListener('change', () => { q('.usage-exempt').checked = true; this.renderCertForm(call); });
    q('.cert-form').addEventListener('submit', (e) => { e.preventDefault(); this.issue(call); });
    q('.act-preview').addEventListener('click', () => this.preview(call));
  }

  // ---- Requests ---------------------------------------------------------------------------------

  /** An error reply in words: the catalogue's text for its code, with the server's message. */
  errorText(prefix, e) {
    const key = `${prefix}.${e.code}`;
    const text = this.t(key, { message: e.message });
    return text === key ? this.t('console.incall.error', { message: e.message }) : text;
  }

  async requestIdentity(call, method) {
    const s = call.incall;
    this.o.note(`identity.request ${method} for ${call.call_id}`);
    try {
      await this.o.client().request('identity.request', { call_id: call.call_id, method });
      // identity.progress (requested) follows; until then, show the request as pending.
      if (s.identity.status !== 'verified') {
        Object.assign(s.identity, { status: 'pending', method, step: 'requested', reason: null, attemptsLeft: null, sentTo: null, code: null, retrying: false });
        this.clearScan(call);
      }
    } catch (e) {
      this.o.note(`identity.request failed: ${e.code} ${e.message}`);
      Object.assign(s.identity, { status: 'failed', method, reason: this.errorText('console.id.error', e), attemptsLeft: null });
    }
    this.render(call);
  }

  async reject(call) {
    const q = (sel) => call.panel.querySelector(sel);
    const reason = q('.reject-reason').value.trim()
      || this.t(call.incall.identity.step === 'scan_received' ? 'console.id.reject_default' : 'console.id.stop_default');
    const err = q('.reject-error');
    err.hidden = true;
    try {
      await this.o.client().request('identity.reject', { call_id: call.call_id, reason });
      this.o.note(`identity.reject ok for ${call.call_id}`);
      q('.reject-reason').value = '';
    } catch (e) {
      this.o.note(`identity.reject failed: ${e.code} ${e.message}`);
      err.textContent = this.errorText('console.id.error', e);
      err.hidden = false;
    }
  }

  async confirm(call) {
    const q = (sel) => call.panel.querySelector(sel);
    const err = q('.confirm-error');
    const fiscalCode = q('.confirm-cf').value.trim().toUpperCase();
    const number = q('.confirm-number').value.trim();
    let type = q('.confirm-type').value;
    if (type === 'altro' && q('.confirm-type-other').value.trim()) type = `altro: ${q('.confirm-type-other').value.trim()}`;
    let problem = null;
    if (!FISCAL_CODE.test(fiscalCode)) problem = ['console.id.bad_fiscal_code', '.confirm-cf'];
    else if (!number) problem = ['console.id.no_number', '.confirm-number'];
    for (const sel of ['.confirm-cf', '.confirm-number']) q(sel).removeAttribute('aria-invalid');
    if (problem) {
      err.textContent = this.t(problem[0]);
      err.hidden = false;
      q(problem[1]).setAttribute('aria-invalid', 'true');
      q(problem[1]).focus();
      return;
    }
    err.hidden = true;
    q('.act-confirm').disabled = true;
    try {
      await this.o.client().request('identity.confirm', {
        call_id: call.call_id, fiscal_code: fiscalCode, document_type: type, document_number: number,
      });
      this.o.note(`identity.confirm ok for ${call.call_id}`);
    } catch (e) {
      this.o.note(`identity.confirm failed: ${e.code} ${e.message}`);
      err.textContent = this.errorText('console.id.error', e);
      err.hidden = false;
    } finally {
      q('.act-confirm').disabled = false;
    }
  }

  /** Reads the certificate form; returns `{body}` or `{problem: [key, selector]}`. */
  certRequest(call) {
    const q = (sel) => call.panel.querySelector(sel);
    const kind = q('.cert-kind').value;
    const fiscalCode = q('.cert-cf').value.trim().toUpperCase();
    const citizen = call.incall.identity.subject?.fiscal_code ?? '';
    const reason = q('.cert-reason').value.trim();
    const asOf = q('.cert-asof').value;
    const body = { call_id: call.call_id, kind };
    if (fiscalCode && !FISCAL_CODE.test(fiscalCode)) return { problem: ['console.cert.bad_fiscal_code', '.cert-cf'] };
    if (fiscalCode) body.fiscal_code = fiscalCode;
    if (AS_OF_KINDS.has(kind)) {
      if (!asOf) return { problem: ['console.cert.no_as_of', '.cert-asof'] };
      if (asOf > today()) return { problem: ['console.cert.future_as_of', '.cert-asof'] };
      body.as_of = asOf;
    }
    if (this.reasonRequired(call) && !reason) return { problem: ['console.cert.no_reason', '.cert-reason'] };
    if (reason) body.reason = reason;
    const exempt = q('.usage-exempt').checked && !CIVIL_KINDS.includes(kind);
    body.usage = exempt ? { exemption: q('.cert-exemption').value } : { bollo: true };
    const marcaId = q('.cert-marca-id').value.replace(/\s+/g, '');
    const marcaDate = q('.cert-marca-date').value;
    if (this.bolloDue(call) && (marcaId || marcaDate)) {
      if (!MARCA_ID.test(marcaId)) return { problem: ['console.cert.bad_marca_id', '.cert-marca-id'] };
      if (!marcaDate) return { problem: ['console.cert.no_marca_date', '.cert-marca-date'] };
      if (marcaDate > today()) return { problem: ['console.cert.future_marca_date', '.cert-marca-date'] };
      body.marca = { id: marcaId, date: marcaDate };
    }
    if (kind === 'contestuale') {
      const parts = [...call.panel.querySelectorAll('.cert-part:checked')].map((c) => c.value);
      if (parts.length) body.parts = parts;
    }
    if (fiscalCode === citizen) delete body.fiscal_code;
    return { body };
  }

  /** Whether the certificate as chosen in the form carries the bollo (so a marca may pay it). */
  bolloDue(call) {
    const q = (sel) => call.panel.querySelector(sel);
    if (CIVIL_KINDS.includes(q('.cert-kind').value)) return false;
    return !q('.usage-exempt').checked || BOLLO_DUE_USES.has(q('.cert-exemption').value);
  }

  /** The form's request, or null after showing its first problem beside the field. */
  checkedRequest(call) {
    const q = (sel) => call.panel.querySelector(sel);
    const err = q('.cert-error');
    for (const sel of ['.cert-cf', '.cert-asof', '.cert-reason', '.cert-marca-id', '.cert-marca-date']) q(sel).removeAttribute('aria-invalid');
    const { body, problem } = this.certRequest(call);
    if (problem) {
      err.textContent = this.t(problem[0]);
      err.hidden = false;
      q(problem[1]).setAttribute('aria-invalid', 'true');
      q(problem[1]).focus();
      return null;
    }
    err.hidden = true;
    return body;
  }

  reasonRequired(call) {
    const q = (sel) => call.panel.querySelector(sel);
    const fiscalCode = q('.cert-cf').value.trim().toUpperCase();
    const citizen = call.incall.identity.subject?.fiscal_code ?? '';
    return PAST_KINDS.has(q('.cert-kind').value) || (fiscalCode !== '' && fiscalCode !== citizen);
  }

  async issue(call) {
    const s = call.incall;
    const q = (sel) => call.panel.querySelector(sel);
    const err = q('.cert-error');
    const body = this.checkedRequest(call);
    if (!body) return;
    s.issuing = true;
    this.set(q('.cert-status'), 'console.cert.issuing');
    this.render(call);
    try {
      const reply = await this.o.client().request('certificate.issue', body);
      this.o.note(`certificate.issue ok: ${reply.document_id} (${reply.kind}, ${reply.pages} p., bollo ${reply.bollo_due})`);
      const doc = { ...reply, blobUrl: null, previewError: null };
      s.docs.push(doc);
      // The draft is replaced by the issued document's own preview.
      q('.cert-draft').hidden = true;
      s.draft = null;
      this.setBoth(q('.cert-status'), (lang) => this.text.cat.t(lang, 'console.cert.issued',
        { kind: this.text.cat.t(lang, `cert.kind.${reply.kind}`), id: reply.document_id }));
      this.loadPreview(call, doc);
    } catch (e) {
      this.o.note(`certificate.issue failed: ${e.code} ${e.message}`);
      delete q('.cert-status').dataset.i18n;
      q('.cert-status').replaceChildren();
      err.textContent = this.errorText('console.cert.error', e);
      err.hidden = false;
    } finally {
      s.issuing = false;
      this.render(call);
      // The disabled form dropped the focus: give it back to the button.
      if (document.activeElement === document.body && !call.panel.hidden) q('.act-issue').focus();
    }
  }

  /** certificate.preview: the PDF as it would be issued, watermarked, shown before "Emetti". */
  async preview(call) {
    const q = (sel) => call.panel.querySelector(sel);
    const err = q('.cert-error');
    const body = this.checkedRequest(call);
    if (!body) return;
    this.set(q('.cert-status'), 'console.cert.previewing');
    try {
      const reply = await this.o.client().request('certificate.preview', body);
      const bytes = Uint8Array.from(atob(reply.pdf), (c) => c.charCodeAt(0));
      const s = call.incall;
      if (s.draftUrl) URL.revokeObjectURL(s.draftUrl);
      s.draftUrl = URL.createObjectURL(new Blob([bytes], { type: 'application/pdf' }));
      s.draft = { kind: reply.kind, fiscal_code: reply.fiscal_code, pages: reply.pages, bytes: bytes.length };
      this.o.note(`certificate.preview ok: ${reply.kind} ${reply.fiscal_code}, ${bytes.length} bytes`);
      const frame = q('.cert-draft-frame');
      frame.title = this.t('console.cert.draft_title', { kind: this.t(`cert.kind.${reply.kind}`) });
      frame.src = s.draftUrl;
      q('.cert-draft').hidden = false;
      this.setBoth(q('.cert-status'), (lang) => this.text.cat.t(lang, 'console.cert.previewed',
        { kind: this.text.cat.t(lang, `cert.kind.${reply.kind}`) }));
      this.render(call);
    } catch (e) {
      this.o.note(`certificate.preview failed: ${e.code} ${e.message}`);
      delete q('.cert-status').dataset.i18n;
      q('.cert-status').replaceChildren();
      err.textContent = this.errorText('console.cert.error', e);
      err.hidden = false;
    }
  }

  async loadPreview(call, doc) {
    try {
      const blob = await this.o.client().fetchBlob(doc.pdf_url);
      if (!this.calls.has(call.call_id)) return;
      // The PDF viewer needs the type even when the server sends none.
      const pdf = blob.type === 'application/pdf' ? blob : new Blob([blob], { type: 'application/pdf' });
      doc.blobUrl = URL.createObjectURL(pdf);
      doc.previewBytes = blob.size;
      doc.previewType = blob.type;
      doc.previewError = null;
      this.o.note(`preview of ${doc.document_id}: ${blob.size} bytes (${blob.type})`);
    } catch (e) {
      this.o.note(`preview of ${doc.document_id} failed: ${e.code} ${e.message}`);
      doc.previewError = this.errorText('console.cert.preview_error', e);
    }
    this.render(call);
  }

  async print(call, doc, copies) {
    const s = call.incall;
    const err = call.panel.querySelector('.print-error');
    err.hidden = true;
    try {
      const reply = await this.o.client().request('print.request', { call_id: call.call_id, document_id: doc.document_id, copies });
      this.o.note(`print.request ok: job ${reply.job_id} (${doc.document_id}, ${copies})`);
      const n = [...s.jobs.values()].filter((j) => j.document_id === doc.document_id).length + 1;
      // A print.update may already have arrived.
      const job = s.jobs.get(reply.job_id) ?? { job_id: reply.job_id, document_id: doc.document_id, state: 'pending', detail: null };
      Object.assign(job, { copies, n });
      s.jobs.set(reply.job_id, job);
      this.announce(call, this.t('console.print.sent', { kind: this.t(`cert.kind.${doc.kind}`) }), true);
    } catch (e) {
      this.o.note(`print.request failed: ${e.code} ${e.message}`);
      err.textContent = this.errorText('console.print.error', e);
      err.hidden = false;
    }
    this.render(call);
  }

  /** Fetches the scan of a paper identification with the session's token. */
  async loadScan(call) {
    const s = call.incall;
    const scan = s.scan;
    if (!scan) return;
    scan.error = null;
    this.render(call);
    try {
      const blob = await this.o.client().fetchBlob(scan.url);
      if (s.scan !== scan) return;
      if (scan.blobUrl) URL.revokeObjectURL(scan.blobUrl);
      scan.blobUrl = URL.createObjectURL(blob);
      this.o.note(`scan ${scan.scan_id}: ${blob.size} bytes (${blob.type})`);
    } catch (e) {
      this.o.note(`scan ${scan.scan_id} failed: ${e.code} ${e.message}`);
      scan.error = this.errorText('console.id.scan_error', e);
    }
    this.render(call);
  }

  clearScan(call) {
    const s = call.incall;
    if (s.scan?.blobUrl) URL.revokeObjectURL(s.scan.blobUrl);
    s.scan = null;
  }

  // ---- Events -----------------------------------------------------------------------------------

  onProgress(e) {
    const call = this.calls.get(e.call_id);
    if (!call) return;
    const s = call.incall;
    if (s.identity.status === 'verified') return;
    Object.assign(s.identity, { status: 'pending', method: e.method, step: e.step, reason: null, attemptsLeft: null, code: null, retrying: false });
    if (e.step === 'requested') {
      s.identity.sentTo = null;
      this.clearScan(call);
    }
    if (e.step === 'pec_sent') s.identity.sentTo = e.sent_to ?? null;
    if (e.step === 'scan_received' && e.scan_url) {
      this.clearScan(call);
      s.scan = { scan_id: e.scan_id, url: e.scan_url, blobUrl: null, error: null };
      this.loadScan(call);
      this.announce(call, this.t('console.id.step.scan_received'));
    }
    this.render(call);
  }

  onVerified(e) {
    const call = this.calls.get(e.call_id);
    if (!call) return;
    const s = call.incall;
    Object.assign(s.identity, { status: 'verified', method: e.method, step: null, subject: e.subject, reason: null, attemptsLeft: null, code: null, retrying: false });
    this.clearScan(call);
    for (const sel of ['.confirm-cf', '.confirm-number', '.confirm-type-other', '.reject-reason']) call.panel.querySelector(sel).value = '';
    // The certificate is for the identified citizen unless the operator says otherwise.
    const cf = call.panel.querySelector('.cert-cf');
    if (!cf.value || cf.dataset.auto === '1') {
      cf.value = e.subject?.fiscal_code ?? '';
      cf.dataset.auto = '1';
    }
    this.announce(call, this.t('console.id.verified_status', { name: this.subjectName(e.subject) }));
    this.render(call);
    this.o.changed(call);
  }

  onFailed(e) {
    const call = this.calls.get(e.call_id);
    if (!call) return;
    const s = call.incall;
    if (s.identity.status === 'verified') return;
    Object.assign(s.identity, {
      status: 'failed', method: e.method ?? s.identity.method, step: null, code: e.code ?? null,
      reason: e.reason ?? '', attemptsLeft: e.attempts_left ?? null,
    });
    // A wrong PIN or code leaves the identification open: the citizen tries again at the kiosk.
    if ((e.code === 'wrong_code' || e.code === 'pin_incorrect') && e.attempts_left > 0) s.identity.retrying = true;
    else s.identity.retrying = false;
    this.clearScan(call);
    this.announce(call, this.t('console.id.failed_status', { reason: e.reason ?? '' }));
    this.render(call);
    this.o.changed(call);
  }

  onPrintUpdate(e) {
    const call = this.calls.get(e.call_id) ?? [...this.calls.values()].find((c) => c.incall.jobs.has(e.job_id));
    if (!call) return;
    const s = call.incall;
    const job = s.jobs.get(e.job_id) ?? { job_id: e.job_id, document_id: e.document_id, copies: null, n: null };
    job.state = e.state;
    job.detail = e.detail ?? null;
    s.jobs.set(e.job_id, job);
    const doc = s.docs.find((d) => d.document_id === job.document_id);
    const kind = doc ? this.t(`cert.kind.${doc.kind}`) : job.document_id;
    this.announce(call, `${kind}: ${this.jobStateText(job)}`, true);
    this.render(call);
  }

  // ---- Rendering --------------------------------------------------------------------------------

  subjectName(subject) {
    return [subject?.given_name, subject?.family_name].filter(Boolean).join(' ');
  }

  /** A job's state in `lang` (the main language by default): "in stampa", "errore: carta esaurita"… */
  jobStateText(job, lang = this.text.lang) {
    const t = (key, vars) => this.text.cat.t(lang, key, vars);
    if (job.state === 'failed') {
      const detail = job.detail && PRINT_DETAILS.has(job.detail) ? t(`console.print.detail.${job.detail}`) : (job.detail ?? t('console.print.detail.unknown'));
      return t('console.print.state.failed', { detail });
    }
    return t(`console.print.state.${job.state}`);
  }

  /** Fills `el` like Bilingual.set, with a text computed for each language. */
  setBoth(el, textOf) {
    delete el.dataset.i18n;
    const main = Object.assign(document.createElement('span'), { textContent: textOf(this.text.lang) });
    const sub = Object.assign(document.createElement('span'), { className: 'sub', lang: this.text.other, textContent: textOf(this.text.other) });
    sub.setAttribute('aria-hidden', 'true');
    el.replaceChildren(main, sub);
  }

  /** Says `text` in the page's live region, naming the booth when it is not the selected one. */
  announce(call, text, always = false) {
    if (call.call_id === this.selectedId && !always) return;
    this.o.say(call.call_id === this.selectedId ? text : `${this.t('console.booth', { n: (call.slot ?? 0) + 1 })}: ${text}`);
  }

  render(call) {
    if (!call?.panel) return;
    const q = (sel) => call.panel.querySelector(sel);
    const slot = (call.slot ?? 0) + 1;
    const name = call.kiosk?.name ?? call.kiosk?.id ?? '';
    this.set(q('.case-title'), 'console.incall.title', { n: slot, name });
    const live = InCall.live(call);
    const ended = q('.case-ended');
    ended.hidden = live;
    if (!live) this.set(ended, call.state === 'wrapup' ? 'console.incall.ended' : 'console.incall.not_live');
    this.renderIdentity(call, live);
    this.renderCertForm(call);
    this.renderDocs(call, live);
    call.panel.dataset.summary = JSON.stringify(this.summary(call.call_id));
  }

  renderIdentity(call, live) {
    const q = (sel) => call.panel.querySelector(sel);
    const id = call.incall.identity;
    const status = q('.id-status');
    status.dataset.status = id.status;
    const method = id.method ? this.t(`console.id.method_name.${id.method}`) : '';
    if (id.status === 'verified') {
      this.set(status, 'console.id.verified');
      status.prepend(Object.assign(document.createElement('span'), { className: 'mark', textContent: '✓ ' }));
    } else if (id.status === 'failed') {
      // The attempts left, unless the server's reason already says them.
      const attempts = id.attemptsLeft !== null && id.attemptsLeft !== undefined && !(id.reason ?? '').includes(String(id.attemptsLeft));
      this.set(status, attempts ? 'console.id.failed_attempts' : 'console.id.failed', { reason: id.reason ?? '', attempts: id.attemptsLeft ?? '' });
      status.prepend(Object.assign(document.createElement('span'), { className: 'mark', textContent: '✗ ' }));
    } else if (id.status === 'pending') {
      const step = id.step === 'requested' ? `requested.${id.method}` : id.step;
      this.set(status, `console.id.step.${step}`, { method, sent_to: id.sentTo ?? '' });
    } else {
      this.set(status, 'console.id.none');
    }
    // The identified citizen.
    const verified = id.status === 'verified';
    q('.subject').hidden = !verified;
    if (verified) {
      q('.subject-name').textContent = this.subjectName(id.subject);
      q('.subject-cf').textContent = id.subject?.fiscal_code ?? '';
      q('.subject-birth').textContent = id.subject?.birth_date ? italianDate(id.subject.birth_date) : this.t('console.id.unknown');
      q('.subject-method').textContent = method;
    }
    // Methods: to start, to retry, or to switch while one is pending.
    q('.methods').hidden = verified;
    for (const b of call.panel.querySelectorAll('.act-method')) {
      b.disabled = !live;
      b.setAttribute('aria-pressed', String(id.status === 'pending' && id.method === b.dataset.method));
    }
    this.set(q('.methods .label'), id.status === 'none' ? 'console.id.choose' : 'console.id.choose_again');
    // The scan beside the live video, and the confirmation form.
    const scan = call.incall.scan;
    const scanBox = q('.scan');
    scanBox.hidden = !scan || verified;
    // While a scan is being compared, the identification takes the whole width.
    q('.panels').classList.toggle('scanning', Boolean(scan) && !verified);
    if (scan && !verified) {
      const img = q('.scan-img');
      img.alt = this.t('console.id.scan_alt', { name: call.kiosk?.name ?? '' });
      if (scan.blobUrl && img.getAttribute('src') !== scan.blobUrl) img.src = scan.blobUrl;
      img.hidden = !scan.blobUrl;
      const err = q('.scan-error');
      err.hidden = !scan.error;
      err.textContent = scan.error ?? '';
      q('.act-scan-retry').hidden = !scan.error;
      const video = q('.scan-live');
      const stream = call.media?.remoteStream ?? null;
      if (video.srcObject !== stream) video.srcObject = stream;
      video.setAttribute('aria-label', this.t('console.booth.video', { name: call.kiosk?.name ?? '' }));
      for (const el of q('.confirm-form').elements) el.disabled = !live;
      this.renderDocType(call);
    } else {
      q('.scan-live').srcObject = null;
    }
    // Stopping a pending identification, or rejecting the document.
    const pending = id.status === 'pending' || (id.status === 'failed' && id.retrying);
    q('.reject').hidden = !pending || !live;
    this.set(q('.act-reject'), scan ? 'console.id.reject' : 'console.id.stop');
  }

  renderDocType(call) {
    const q = (sel) => call.panel.querySelector(sel);
    const other = q('.confirm-type').value === 'altro';
    q('.other-label').hidden = !other;
    q('.confirm-type-other').hidden = !other;
  }

  renderCertForm(call) {
    const q = (sel) => call.panel.querySelector(sel);
    const s = call.incall;
    const verified = s.identity.status === 'verified';
    const live = InCall.live(call);
    const locked = q('.cert-locked');
    locked.hidden = verified && live;
    if (!verified) this.set(locked, 'console.cert.locked');
    else if (!live) this.set(locked, 'console.cert.locked_ended');
    q('.cert-fields').disabled = !verified || !live || s.issuing;
    const kind = q('.cert-kind').value;
    const asOf = AS_OF_KINDS.has(kind);
    q('.asof-label').hidden = !asOf;
    q('.cert-asof').hidden = !asOf;
    q('.cert-asof').max = today();
    q('.cert-asof').required = asOf;
    const required = this.reasonRequired(call);
    this.set(q('.reason-label'), required ? 'console.cert.reason_required' : 'console.cert.reason');
    q('.cert-reason').required = required;
    const citizen = s.identity.subject?.fiscal_code ?? '';
    const cf = q('.cert-cf').value.trim().toUpperCase();
    if (cf !== citizen) delete q('.cert-cf').dataset.auto;
    this.set(q('.cert-for-hint'), !cf || cf === citizen ? 'console.cert.for_citizen' : 'console.cert.for_other');
    const civil = CIVIL_KINDS.includes(kind);
    q('.usage-exempt-law').hidden = !civil;
    q('.usage-bollo').disabled = civil;
    q('.usage-exempt').disabled = civil;
    q('.cert-exemption').disabled = civil || !q('.usage-exempt').checked;
    const marca = this.bolloDue(call);
    q('.marca').hidden = !marca;
    q('.cert-marca-id').disabled = !marca;
    q('.cert-marca-date').disabled = !marca;
    q('.cert-marca-date').max = today();
    q('.cert-parts').hidden = kind !== 'contestuale';
  }

  /** The issued documents: one card each with its facts, preview, print controls and jobs. */
  renderDocs(call, live) {
    const s = call.incall;
    const panel = call.panel.querySelector('.panel-docs');
    panel.querySelector('.docs-empty').hidden = s.docs.length > 0;
    const list = panel.querySelector('.docs');
    // Existing cards keep their iframe (the preview is not reloaded on each render).
    for (const doc of s.docs) {
      let li = list.querySelector(`[data-document-id="${CSS.escape(doc.document_id)}"]`);
      if (!li) {
        li = this.docItem(call, doc);
        list.prepend(li);
      }
      this.renderDoc(li, doc);
      this.renderPrintItem(call, li, doc, live);
    }
  }

  docItem(call, doc) {
    const li = document.createElement('li');
    li.className = 'doc';
    li.dataset.documentId = doc.document_id;
    const p = `${call.panelId}-doc-${call.incall.docs.indexOf(doc) + 1}`;
    li.innerHTML = `
      <p class="doc-title" id="${p}-title"></p>
      <dl class="doc-facts">
        <div><dt data-i18n="console.cert.document_id"></dt><dd class="doc-id"></dd></div>
        <div><dt data-i18n="console.cert.subject"></dt><dd class="doc-cf"></dd></div>
        <div><dt data-i18n="console.cert.pages"></dt><dd class="doc-pages"></dd></div>
        <div><dt data-i18n="console.cert.bollo_label"></dt><dd class="doc-bollo"></dd></div>
        <div><dt data-i18n="console.cert.validity"></dt><dd class="doc-valid"></dd></div>
      </dl>
      <div class="print-controls">
        <label for="${p}-copies" data-i18n="console.print.copies"></label>
        <input id="${p}-copies" class="print-copies" type="number" min="1" max="5" value="1" inputmode="numeric">
        <button type="button" class="btn btn-primary act-print" aria-describedby="${p}-title"></button>
      </div>
      <div class="reprint-confirm" role="group" aria-labelledby="${p}-confirm-text" hidden>
        <p id="${p}-confirm-text" class="reprint-question"></p>
        <button type="button" class="btn btn-primary act-reprint-yes" data-i18n="console.print.reprint_yes"></button>
        <button type="button" class="btn act-reprint-no" data-i18n="console.print.reprint_no"></button>
      </div>
      <ul class="jobs"></ul>
      <p class="doc-preview-status hint" role="status"></p>
      <a class="btn doc-open" target="_blank" rel="noopener" hidden></a>
      <iframe class="doc-preview" hidden></iframe>
      <span class="visually-hidden doc-new-tab" id="${p}-new-tab" data-i18n="console.cert.new_tab"></span>`;
    this.fillText(li);
    const q = (sel) => li.querySelector(sel);
    const copies = () => Math.min(5, Math.max(1, Math.round(Number(q('.print-copies').value) || 1)));
    const hasJobs = () => [...call.incall.jobs.values()].some((j) => j.document_id === doc.document_id);
    q('.act-print').addEventListener('click', () => {
      q('.print-copies').value = String(copies());
      if (!hasJobs()) {
        this.print(call, doc, copies());
        return;
      }
      // A reprint is deliberate: ask first.
      this.setBoth(q('.reprint-question'), (lang) => this.text.cat.t(lang, 'console.print.reprint_question',
        { kind: this.text.cat.t(lang, `cert.kind.${doc.kind}`), copies: copies() }));
      q('.reprint-confirm').hidden = false;
      q('.act-reprint-yes').focus();
    });
    q('.act-reprint-yes').addEventListener('click', () => {
      q('.reprint-confirm').hidden = true;
      this.print(call, doc, copies());
      q('.act-print').focus();
    });
    q('.act-reprint-no').addEventListener('click', () => {
      q('.reprint-confirm').hidden = true;
      q('.act-print').focus();
    });
    return li;
  }

  renderDoc(li, doc) {
    const q = (sel) => li.querySelector(sel);
    const kind = this.t(`cert.kind.${doc.kind}`);
    this.setBoth(q('.doc-title'), (lang) => this.text.cat.t(lang, `cert.kind.${doc.kind}`));
    q('.doc-id').textContent = doc.document_id;
    q('.doc-cf').textContent = doc.fiscal_code ?? '';
    q('.doc-pages').textContent = String(doc.pages);
    if (doc.marca_id) this.set(q('.doc-bollo'), 'console.cert.bollo_paid', { id: doc.marca_id });
    else this.set(q('.doc-bollo'), doc.bollo_due ? 'console.cert.bollo_due' : 'console.cert.bollo_not_due');
    if (doc.valid_until) this.set(q('.doc-valid'), 'console.cert.valid_until', { date: italianDate(doc.valid_until) });
    else this.set(q('.doc-valid'), 'console.cert.no_expiry');
    const frame = q('.doc-preview');
    const open = q('.doc-open');
    const status = q('.doc-preview-status');
    if (doc.blobUrl) {
      if (frame.getAttribute('src') !== doc.blobUrl) frame.src = doc.blobUrl;
      frame.title = this.t('console.cert.preview_title', { kind, id: doc.document_id });
      frame.hidden = false;
      open.href = doc.blobUrl;
      open.hidden = false;
      this.set(open, 'console.cert.open_pdf');
      // The link's name is its visible words; the document's title and "new tab" describe it.
      open.setAttribute('aria-describedby', `${q('.doc-title').id} ${q('.doc-new-tab').id}`);
      status.hidden = true;
    } else {
      frame.hidden = true;
      open.hidden = true;
      status.hidden = false;
      if (doc.previewError) {
        delete status.dataset.i18n;
        status.textContent = doc.previewError;
      }
      else this.set(status, 'console.cert.preview_loading');
    }
  }

  renderPrintItem(call, li, doc, live) {
    const q = (sel) => li.querySelector(sel);
    const jobs = [...call.incall.jobs.values()].filter((j) => j.document_id === doc.document_id);
    const btn = q('.act-print');
    this.set(btn, jobs.length ? 'console.print.reprint' : 'console.print.print');
    btn.disabled = !live;
    q('.print-copies').disabled = !live;
    if (!live) q('.reprint-confirm').hidden = true;
    q('.jobs').replaceChildren(...jobs.map((job, i) => {
      const item = document.createElement('li');
      item.className = 'job';
      item.dataset.jobId = job.job_id;
      item.dataset.state = job.state;
      const key = !job.copies ? 'console.print.job_plain' : job.copies === 1 ? 'console.print.job_one' : 'console.print.job';
      const mark = { printed: '✓ ', failed: '✗ ' }[job.state] ?? '';
      // "Stampa 1 (1 copia): **stampato**", then the same small in the other language.
      for (const [lang, cls] of [[this.text.lang, 'job-main'], [this.text.other, 'sub']]) {
        const span = Object.assign(document.createElement('span'), { className: cls, lang });
        const state = Object.assign(document.createElement('strong'), { className: 'job-state', textContent: `${mark}${this.jobStateText(job, lang)}` });
        span.append(`${this.text.cat.t(lang, key, { n: job.n ?? i + 1, copies: job.copies })} `, state);
        if (cls === 'sub') span.setAttribute('aria-hidden', 'true');
        item.append(span);
      }
      return item;
    }));
  }
}
