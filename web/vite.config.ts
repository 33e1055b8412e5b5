import { sveltekit } from '@sveltejs/kit/vite';
import { defineConfig } from 'vite';

// `npm run dev -w web` proxies /api to a daemon on this machine (override with BACKUPD_URL).
const daemon = process.env.BACKUPD_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [sveltekit()],
  build: {
    // Rolldown reports when plugins are slow; here that is SvelteKit's adapter writing the site,
    // which is expected and not ours to fix.
    rolldownOptions: { checks: { bundlerTimings: false } },
  },
  server: {
    proxy: {
      '/api': { target: daemon, changeOrigin: false },
    },
  },
});
