// One GPU per process, when identical GPUs share a name: WebGPU hands a process one adapter, and
// Dawn picks it by name. A small Vulkan layer (C source below, built with the system's C compiler
// at first use into ~/.cache/tapegrad) makes vkEnumeratePhysicalDevices list only the device at
// index TAPEGRAD_VK_GPU, in the loader's order (PCI bus order for GPUs, as nvidia-smi counts them),
// so Dawn can only find that one. Mesa's device-select layer chooses by vendor:device or PCI
// address and keeps the others listed; CUDA_VISIBLE_DEVICES means nothing to Vulkan; the loader's
// driver filters choose drivers, not devices. This layer is the narrow thing that works for
// identical devices of one driver.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const LAYER_NAME = 'VK_LAYER_TAPEGRAD_gpu_select';

/**
 * The layer, in C with the few Vulkan declarations it needs written out (no Vulkan headers
 * needed to build it). It passes everything through except instance creation (to find the next
 * layer in the chain), and the physical-device enumeration it filters.
 */
const LAYER_SOURCE = String.raw`
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int32_t VkResult;
typedef void *VkInstance;
typedef void *VkPhysicalDevice;
typedef void (*PFN_vkVoidFunction)(void);
typedef PFN_vkVoidFunction (*PFN_vkGetInstanceProcAddr)(VkInstance, const char *);
typedef VkResult (*PFN_vkCreateInstance)(const void *, const void *, VkInstance *);
typedef void (*PFN_vkDestroyInstance)(VkInstance, const void *);
typedef VkResult (*PFN_vkEnumeratePhysicalDevices)(VkInstance, uint32_t *, VkPhysicalDevice *);

/* vk_layer.h: the loader's chain info in VkInstanceCreateInfo::pNext */
typedef struct LayerLink { struct LayerLink *pNext; PFN_vkGetInstanceProcAddr nextGetInstanceProcAddr; void *nextGetPhysicalDeviceProcAddr; } LayerLink;
typedef struct { int32_t sType; const void *pNext; int32_t function; LayerLink *pLayerInfo; } LayerInstanceCreateInfo;
typedef struct { int32_t sType; const void *pNext; } BaseIn;
typedef struct { int32_t sType; void *pNext; uint32_t loaderLayerInterfaceVersion; PFN_vkGetInstanceProcAddr pfnGetInstanceProcAddr;
  void *pfnGetDeviceProcAddr; void *pfnGetPhysicalDeviceProcAddr; } NegotiateLayerInterface;
enum { STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO = 47, LAYER_LINK_INFO = 0, SUCCESS = 0, INCOMPLETE = 5, ERROR_INITIALIZATION_FAILED = -3 };

/* instances are few (one per Dawn instance): a small table of each one's next functions, looked up
   while vkCreateInstance runs (later the loader's instance dispatches to the top of the chain) */
#define MAX_INSTANCES 64
static struct { VkInstance instance; PFN_vkGetInstanceProcAddr gipa; PFN_vkEnumeratePhysicalDevices enumerate; PFN_vkDestroyInstance destroy; } instances[MAX_INSTANCES];

static int slot_of(VkInstance instance) {
  if (!instance) return -1;
  for (int i = 0; i < MAX_INSTANCES; i++) if (instances[i].instance == instance) return i;
  return -1;
}

static VkResult create_instance(const void *info, const void *allocator, VkInstance *out) {
  LayerInstanceCreateInfo *chain = (LayerInstanceCreateInfo *)((const BaseIn *)info)->pNext;
  while (chain && !(chain->sType == STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO && chain->function == LAYER_LINK_INFO))
    chain = (LayerInstanceCreateInfo *)chain->pNext;
  if (!chain) return ERROR_INITIALIZATION_FAILED;
  PFN_vkGetInstanceProcAddr next = chain->pLayerInfo->nextGetInstanceProcAddr;
  chain->pLayerInfo = chain->pLayerInfo->pNext; /* the next layer finds its own link */
  PFN_vkCreateInstance create = (PFN_vkCreateInstance)next(NULL, "vkCreateInstance");
  VkResult r = create(info, allocator, out);
  if (r != SUCCESS) return r;
  for (int i = 0; i < MAX_INSTANCES; i++) {
    if (instances[i].instance) continue;
    instances[i].instance = *out;
    instances[i].gipa = next;
    instances[i].enumerate = (PFN_vkEnumeratePhysicalDevices)next(*out, "vkEnumeratePhysicalDevices");
    instances[i].destroy = (PFN_vkDestroyInstance)next(*out, "vkDestroyInstance");
    return r;
  }
  fprintf(stderr, "tapegrad gpu select layer: more than %d Vulkan instances\n", MAX_INSTANCES);
  return ERROR_INITIALIZATION_FAILED;
}

static void destroy_instance(VkInstance instance, const void *allocator) {
  int i = slot_of(instance);
  if (i < 0) return;
  PFN_vkDestroyInstance destroy = instances[i].destroy;
  instances[i].instance = NULL;
  destroy(instance, allocator);
}

static VkResult enumerate_physical_devices(VkInstance instance, uint32_t *count, VkPhysicalDevice *devices) {
  int i = slot_of(instance);
  if (i < 0) return ERROR_INITIALIZATION_FAILED;
  PFN_vkEnumeratePhysicalDevices next = instances[i].enumerate;
  uint32_t n = 0;
  VkResult r = next(instance, &n, NULL);
  if (r < 0) return r;
  VkPhysicalDevice *all = calloc(n ? n : 1, sizeof *all);
  if (!all) return -1; /* VK_ERROR_OUT_OF_HOST_MEMORY */
  r = next(instance, &n, all);
  if (r < 0) { free(all); return r; }
  const char *want = getenv("TAPEGRAD_VK_GPU");
  long k = want ? strtol(want, NULL, 10) : 0;
  char seen[16];
  snprintf(seen, sizeof seen, "%u", n);
  setenv("TAPEGRAD_VK_GPU_COUNT", seen, 1); /* for the error that names how many there are */
  /* an index past the end keeps them all (tapegrad then refuses it, naming the count): a layer
     above may not survive an empty list (Mesa's device-select does not) */
  int in_range = k >= 0 && (uint32_t)k < n;
  uint32_t first = in_range ? (uint32_t)k : 0, keep = in_range ? 1 : n;
  if (!devices) { *count = keep; free(all); return SUCCESS; }
  uint32_t m = *count < keep ? *count : keep;
  for (uint32_t j = 0; j < m; j++) devices[j] = all[first + j];
  *count = m;
  free(all);
  return m < keep ? INCOMPLETE : SUCCESS;
}

static PFN_vkVoidFunction get_instance_proc_addr(VkInstance instance, const char *name) {
  if (!strcmp(name, "vkGetInstanceProcAddr")) return (PFN_vkVoidFunction)get_instance_proc_addr;
  if (!strcmp(name, "vkCreateInstance")) return (PFN_vkVoidFunction)create_instance;
  if (!strcmp(name, "vkDestroyInstance")) return (PFN_vkVoidFunction)destroy_instance;
  if (!strcmp(name, "vkEnumeratePhysicalDevices")) return (PFN_vkVoidFunction)enumerate_physical_devices;
  int i = slot_of(instance);
  return i < 0 ? NULL : instances[i].gipa(instance, name);
}

__attribute__((visibility("default"))) VkResult vkNegotiateLoaderLayerInterfaceVersion(NegotiateLayerInterface *v) {
  if (v->loaderLayerInterfaceVersion < 2) return ERROR_INITIALIZATION_FAILED;
  v->loaderLayerInterfaceVersion = 2;
  v->pfnGetInstanceProcAddr = get_instance_proc_addr;
  v->pfnGetPhysicalDeviceProcAddr = NULL;
  return SUCCESS;
}
`;

/** Where the built layer and its manifest live: one folder per version of the source. */
function layerDir(): string {
  const hash = createHash('sha256').update(LAYER_SOURCE).digest('hex').slice(0, 12);
  const base = process.env['TAPEGRAD_CACHE'] || join(process.env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'tapegrad');
  return join(base, `vk-gpu-select-${hash}`);
}

/** Build the layer once (C compiler: $CC or cc), with its manifest; returns the folder to add to the layer path. */
export function buildGpuSelectLayer(): string {
  const dir = layerDir();
  const lib = join(dir, 'libtapegrad_gpu_select.so');
  const manifest = join(dir, 'tapegrad_gpu_select.json');
  if (existsSync(lib) && existsSync(manifest)) return dir;
  mkdirSync(dir, { recursive: true });
  const src = join(dir, `gpu_select.${process.pid}.c`), tmp = `${lib}.${process.pid}.tmp`;
  writeFileSync(src, LAYER_SOURCE);
  const cc = process.env['CC'] || 'cc';
  try {
    execFileSync(cc, ['-shared', '-fPIC', '-O2', '-fvisibility=hidden', '-o', tmp, src], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    const why = err.code === 'ENOENT' ? `there is no C compiler '${cc}' (Debian: apt-get install -y gcc libc6-dev; or set CC)` : `${cc} failed: ${err.stderr?.toString().trim() || err.message}`;
    throw new Error(`choosing one GPU per rank needs a small Vulkan layer built from source, and ${why}`);
  } finally {
    rmSync(src, { force: true });
  }
  renameSync(tmp, lib);
  // (the ranks of one machine may all build it at once: every temp name is the process's own)
  writeFileSync(`${manifest}.${process.pid}.tmp`, JSON.stringify({
    file_format_version: '1.1.2',
    layer: { name: LAYER_NAME, type: 'GLOBAL', library_path: lib, api_version: '1.3.0', implementation_version: '1', description: 'tapegrad: list only the GPU at index $TAPEGRAD_VK_GPU' },
  }, null, 1));
  renameSync(`${manifest}.${process.pid}.tmp`, manifest);
  return dir;
}

/**
 * Make this process see only GPU `index` (before Dawn creates its Vulkan instance): the layer
 * built, added to the loader's layer path and enabled through the environment.
 */
export function selectGpu(index: number): void {
  if (!Number.isInteger(index) || index < 0) throw new Error(`GPU index ${index}: expected an integer >= 0`);
  const dir = buildGpuSelectLayer();
  const add = (name: string, value: string, sep: string): void => {
    const had = process.env[name];
    if (!had?.split(sep).includes(value)) process.env[name] = had ? `${had}${sep}${value}` : value;
  };
  add('VK_ADD_LAYER_PATH', dir, ':');
  add('VK_INSTANCE_LAYERS', LAYER_NAME, ':');
  process.env['TAPEGRAD_VK_GPU'] = String(index);
}

/** How many devices the layer saw (once an adapter was asked for), or null. */
export function gpuCount(): number | null {
  const n = process.env['TAPEGRAD_VK_GPU_COUNT'];
  return n === undefined ? null : Number(n);
}
