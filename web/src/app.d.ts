// See https://svelte.dev/docs/kit/types#app.d.ts
declare global {
  namespace App {
    // interface Error {}
    // interface Locals {}
    // interface PageData {}
    // interface PageState {}
    // interface Platform {}
  }

  interface ImportMetaEnv {
    /** Origin of the backupd API, e.g. https://backup.example.net. Empty: the panel's own origin. */
    readonly VITE_API_BASE?: string;
  }
}

export {};
