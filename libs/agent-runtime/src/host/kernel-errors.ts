import { KernelError, KernelErrorCode, KernelOperation } from '@rebootless/kernel-model';

const NODE_ERRNO: ReadonlySet<string> = new Set<KernelErrorCode>([
  'EBUSY',
  'EINVAL',
  'ENOENT',
  'EEXIST',
  'EPERM',
  'EACCES',
  'ENOEXEC',
  'ENODEV',
  'EKEYREJECTED',
  'ENOKEY',
]);

/** A failed fs call on sysfs/procfs: the kernel's store() return value arrives as the errno. */
export function kernelErrorFromFs(
  error: unknown,
  operation: KernelOperation,
  what: string,
  moduleName?: string,
): KernelError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'EAGAIN') return new KernelError('EBUSY', `${what}: ${message}`, operation, moduleName);
  const mapped: KernelErrorCode = code && NODE_ERRNO.has(code) ? (code as KernelErrorCode) : 'EIO';
  return new KernelError(mapped, `${what}: ${message}`, operation, moduleName);
}

/**
 * kmod prints the errno as text (strerror, or its own wording: "Invalid parameters" is EINVAL,
 * "Unknown symbol in module" is ENOENT); rmmod checks the refcount itself and says "is in use".
 */
const KMOD_MESSAGES: ReadonlyArray<[RegExp, KernelErrorCode]> = [
  [/is in use|Device or resource busy|Resource temporarily unavailable/i, 'EBUSY'],
  [/not currently loaded|No such file or directory|Unknown symbol in module/i, 'ENOENT'],
  [/File exists/i, 'EEXIST'],
  [/Invalid argument|Invalid parameters/i, 'EINVAL'],
  [/Invalid module format|Exec format error/i, 'ENOEXEC'],
  [/Key was rejected by service/i, 'EKEYREJECTED'],
  [/Required key not available/i, 'ENOKEY'],
  [/Operation not permitted/i, 'EPERM'],
  [/Permission denied/i, 'EACCES'],
  [/No such device/i, 'ENODEV'],
];

export function kernelErrorFromKmod(
  stderr: string,
  operation: KernelOperation,
  moduleName: string,
  fallback: string,
): KernelError {
  const text = stderr.trim() || fallback;
  const match = KMOD_MESSAGES.find(([pattern]) => pattern.test(text));
  return new KernelError(match ? match[1] : 'EIO', text, operation, moduleName);
}
