// The admin panel in Debian's Chromium, driven as the owner drives it on the first day:
// any page leads to the setup, the code and a password lead to the overview, the log shows it.
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cleanEnv,
  makeHome,
  startDaemon,
  type Home,
  type RunningDaemon,
} from '../helpers/daemon.js';

let home: Home;
let daemon: RunningDaemon;
let browser: Browser;

beforeAll(async () => {
  home = await makeHome();
  daemon = await startDaemon(home, cleanEnv());
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
});
afterAll(async () => {
  await browser?.close();
  await daemon?.stop();
  await home?.cleanup();
});

describe('the admin panel on the first day', () => {
  it('walks from the setup code to the overview and the log', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(10_000); // each waitFor() below fails the test if the text never shows
    await page.goto(`${daemon.url}/logs`);
    await page.waitForURL(/\/setup/);
    await page.getByLabel(/setup code/i).fill('WRNG-CODE-2222');
    const passwords = page.getByLabel(/password/i);
    await passwords.nth(0).fill('correct horse battery staple');
    await passwords.nth(1).fill('correct horse battery staple');
    await page
      .getByRole('button', { name: /set|save|continue|create/i })
      .first()
      .click();
    await page.getByText(/setup code is not right/i).waitFor();

    await page.getByLabel(/setup code/i).fill(daemon.setupCode()!);
    await page
      .getByRole('button', { name: /set|save|continue|create/i })
      .first()
      .click();
    await page.waitForURL(`${daemon.url}/`);
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.getByText('No Google account connected yet.').first().waitFor();
    await page.getByText(home.secondDisk).waitFor();

    await page.getByRole('link', { name: 'Logs' }).click();
    await page.getByText('admin password set: first-run setup complete').waitFor();

    await page.getByRole('button', { name: /sign out/i }).click();
    await page.waitForURL(/\/login/);
    expect(
      (await page.context().cookies()).find((c) => c.name === 'backupd_session'),
    ).toBeUndefined();
  });
});
