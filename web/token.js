// The token form: when the bridge answers 401, it asks for a bearer token (api.js keeps it).
//
// A modal <dialog>, so it stays on top of the history view. Escape cannot answer it, so it does
// not close the form; if the browser closes it anyway, a button in the header opens it again.

export class TokenForm {
  // onChange: called when the page starts or stops waiting for a token.
  constructor(dialog, reopen, onChange) {
    this.dialog = dialog;
    this.reopen = reopen;
    this.onChange = onChange;
    this.input = dialog.querySelector('input');
    this.why = dialog.querySelector('.why');
    this.resolve = null;  // set while a token is wanted
    dialog.addEventListener('cancel', (e) => e.preventDefault());
    dialog.addEventListener('close', () => { this.reopen.hidden = !this.resolve || dialog.open; });
    reopen.addEventListener('click', () => this.show());
    dialog.querySelector('form').addEventListener('submit', (e) => {
      e.preventDefault();
      const token = this.input.value.trim();
      if (!token || !this.resolve) return;
      const resolve = this.resolve;
      this.resolve = null;
      this.dialog.close();
      this.onChange();
      resolve(token);
    });
  }

  get waiting() { return this.resolve !== null; }

  // Resolves with the token entered. `refused`: a token was sent and the bridge said no, for the
  // reason in `message`.
  ask({ refused, message }) {
    this.why.textContent = refused
      ? `The token was refused${message ? ` (${message})` : ''}. Enter a valid one.`
      : 'This bridge requires a token to show its readings.';
    return new Promise((resolve) => {
      this.resolve = resolve;
      this.show();
      this.onChange();
    });
  }

  show() {
    this.reopen.hidden = true;
    this.input.value = '';
    if (!this.dialog.open) this.dialog.showModal();
    this.input.focus();
  }
}
