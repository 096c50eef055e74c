// SwiftShader: Chromium's software Vulkan driver, a real WebGPU adapter without a GPU (slow,
// but every WGSL kernel really computes). Debian ships it with the `chromium` package; Dawn
// finds it when the Vulkan loader (`libvulkan1`) is pointed at its ICD file. Nothing selects
// it silently: the tests do (test/setup.ts), and users opt in with `--backend gpu-swiftshader`.

import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
export const SWIFTSHADER_INSTALL = 'apt-get install -y chromium libvulkan1';

/** Whether Debian's SwiftShader ICD and a Vulkan loader are installed. */
export function swiftShaderInstalled(): boolean {
  return existsSync(SWIFTSHADER_ICD) && ['/usr/lib/x86_64-linux-gnu/libvulkan.so.1', '/usr/lib/aarch64-linux-gnu/libvulkan.so.1', '/usr/lib/libvulkan.so.1']
    .some((p) => existsSync(p));
}

/** Whether the user chose a Vulkan driver, or the machine has a GPU device node (a hardware adapter wins). */
export function hardwareAdapterConfigured(): boolean {
  if (process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES) return true;
  if (existsSync('/dev/nvidia0')) return true;
  try { return readdirSync('/dev/dri').some((f) => f.startsWith('renderD')); } catch { return false; }
}

/**
 * Point the Vulkan loader at SwiftShader for this process (before Dawn is loaded). Keeps a
 * VK_ICD_FILENAMES / VK_DRIVER_FILES the user set; gives Dawn a private XDG_RUNTIME_DIR if
 * none is set (it complains without one). Throws, naming the packages, when it is not installed.
 */
export function useSwiftShader(): void {
  if (!swiftShaderInstalled()) {
    throw new Error(`SwiftShader (a software WebGPU adapter) is not installed: ${SWIFTSHADER_INSTALL} (Debian/Ubuntu)`);
  }
  if (!process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  if (!process.env.XDG_RUNTIME_DIR) {
    const dir = join(tmpdir(), `tapegrad-xdg-${process.getuid?.() ?? 'user'}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env.XDG_RUNTIME_DIR = dir;
  }
}
