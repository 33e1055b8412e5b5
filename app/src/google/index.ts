/** Google sign-in and the accounts it yields; the pulls import only ./accounts.js. */
import type { ConfigService } from '../config/index.js';
import type { Logger } from '../log/index.js';
import type { State } from '../state/index.js';
import { StoredGoogleAccounts } from './accounts.js';
import { GoogleSignIn } from './signin.js';

export * from './accounts.js';
export { GoogleSignInError } from './errors.js';
export { GoogleSignIn, type RedirectKind, type StartedSignIn } from './signin.js';

export interface Google {
  accounts: StoredGoogleAccounts;
  signIn: GoogleSignIn;
}

export function createGoogle(opts: {
  config: ConfigService;
  state: State;
  logger: Logger;
  env: NodeJS.ProcessEnv;
}): Google {
  const runtime = () => opts.config.runtime;
  const accounts = new StoredGoogleAccounts({
    runtime,
    state: opts.state,
    logger: opts.logger,
    env: opts.env,
    // Through the config service, so the redaction of logs and answers learns the new value.
    setSecret: (name, value) => opts.config.setSecret(name, value),
  });
  const signIn = new GoogleSignIn({ accounts, runtime, env: opts.env, logger: opts.logger });
  return { accounts, signIn };
}
