/**
 * The Drive source as a Puller (sync/once.ts): every signed-in account pulled in turn, each
 * on its own, so that one account's lost grant or failure leaves the others going.
 */
import { join } from 'node:path';
import type { Runtime } from '../../config/index.js';
import type { Logger } from '../../log/index.js';
import { BOOKKEEPING_DIR } from '../../mirror/watcher.js';
import type { State } from '../../state/index.js';
import type { Puller } from '../../sync/once.js';
import { googleApiRoot, isInvalidGrant, type GoogleAccounts } from '../accounts.js';
import { googleDriveClient } from './api.js';
import { pullAccount, type PassResult } from './pull.js';
import { messageOf, type RetryPolicy } from './retry.js';

export interface DrivePullerDeps {
  runtime: () => Runtime;
  state: State;
  logger: Logger;
  accounts: GoogleAccounts;
  env?: NodeJS.ProcessEnv;
  retry?: RetryPolicy;
}

export interface AccountPassOutcome {
  email: string;
  ok: boolean;
  result?: PassResult;
  error?: { message: string; fix?: string };
}

export class DrivePuller implements Puller {
  readonly source = 'google_drive' as const;
  constructor(private readonly deps: DrivePullerDeps) {}

  /** One pass of one account; its status in the state says how it went. */
  async pullOne(
    account: { id: number; email: string },
    signal?: AbortSignal,
  ): Promise<AccountPassOutcome> {
    const { state, logger } = this.deps;
    const runtime = this.deps.runtime();
    const cfg = runtime.config.sources.google_drive;
    const base = runtime.sourcePath('google_drive');
    const ga = { source: 'google_drive' as const, email: account.email, id: account.id };
    try {
      const auth = await this.deps.accounts.client(ga);
      const client = googleDriveClient({
        auth,
        apiRoot: googleApiRoot(this.deps.env),
        retry: {
          ...(this.deps.retry ? { policy: this.deps.retry } : {}),
          ...(signal ? { signal } : {}),
          onRetry: ({ attempt, waitMs, err }) =>
            logger.warn(
              { source: 'google_drive', account: account.email, attempt, wait_ms: waitMs },
              `Drive asked to slow down or failed (${messageOf(err)}): trying again in ${Math.round(waitMs / 100) / 10} s`,
            ),
        },
      });
      const result = await pullAccount({
        accountId: account.id,
        email: account.email,
        root: join(base, account.email),
        manifestDir: join(base, BOOKKEEPING_DIR),
        client,
        state,
        logger,
        exportFormats: cfg.export_formats,
        acknowledgeAbuse: cfg.acknowledge_abuse,
        concurrency: cfg.download_concurrency,
        ...(signal ? { signal } : {}),
      });
      const ok = result.failed === 0;
      await state.accounts.setStatus(
        account.id,
        'ok',
        ok
          ? undefined
          : {
              message: `${result.failed} file(s) could not be downloaded: ${result.problems[0]?.message ?? ''}`,
              fix: 'They are tried again on the next pass; GET /api/sources and the log name them.',
            },
      );
      return { email: account.email, ok, result };
    } catch (err) {
      if (signal?.aborted) throw err;
      if (isInvalidGrant(err)) {
        await this.deps.accounts.signInLost(ga, err);
        return {
          email: account.email,
          ok: false,
          error: {
            message: `the sign-in of ${account.email} was revoked or has expired`,
            fix: 'Sign in to this account again.',
          },
        };
      }
      const error = {
        message: `the Drive pass of ${account.email} stopped: ${messageOf(err)}`,
        fix: 'It is tried again on the next pass; what was already brought is kept. If it persists, see docs/troubleshooting.md.',
      };
      await state.accounts.setStatus(account.id, 'error', error);
      logger.error({ source: 'google_drive', account: account.email, err }, error.message);
      return { email: account.email, ok: false, error };
    }
  }

  async pull(signal?: AbortSignal) {
    let accounts;
    try {
      accounts = await this.deps.accounts.list('google_drive');
    } catch (err) {
      return {
        ok: false,
        note: 'could not tell which Google account to pull',
        error: {
          message: messageOf(err),
          fix: 'Check GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET and GOOGLE_REFRESH_TOKEN, or sign in again.',
        },
      };
    }
    if (accounts.length === 0)
      return {
        ok: true,
        note: 'no Google account is signed in: nothing to pull (sign in, or set GOOGLE_REFRESH_TOKEN)',
      };
    const records = await this.deps.state.accounts.list('google_drive');
    const notes: string[] = [];
    let error: { message: string; fix?: string } | undefined;
    for (const a of accounts) {
      if (records.find((r) => r.id === a.id)?.status === 'paused') {
        notes.push(`${a.email}: paused`);
        continue;
      }
      const o = await this.pullOne(a, signal);
      if (o.result) {
        const r = o.result;
        notes.push(
          `${a.email}: ${r.kind === 'first' ? 'first pass' : `${r.changes} change(s)`}, ${r.downloaded} downloaded, ${r.moved} moved, ${r.removed} removed` +
            (r.deferred ? `, ${r.deferred} deferred` : '') +
            (r.skipped ? `, ${r.skipped} skipped` : '') +
            (r.failed ? `, ${r.failed} failed` : '') +
            `, ${r.apiCalls} API call(s)`,
        );
      } else notes.push(`${a.email}: failed`);
      if (!o.ok && !error)
        error = o.error ?? {
          message: `${o.result?.failed ?? 0} file(s) of ${a.email} could not be downloaded: ${o.result?.problems[0]?.path}: ${o.result?.problems[0]?.message}`,
          fix: 'They are tried again on the next pass.',
        };
    }
    return { ok: !error, note: notes.join('; '), ...(error ? { error } : {}) };
  }
}
