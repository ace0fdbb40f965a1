/* /proc/cpuinfo of the aarch64 core this runs on (the ISA lane runs it under qemu-aarch64 -cpu CORE, built static
 * with aarch64-linux-gnu-gcc). qemu-user shows the guest the host's x86 /proc/cpuinfo, on which onnxruntime's
 * aarch64 build crashes; the lane puts this program's output at SYSROOT/proc/cpuinfo, where qemu -L sends the
 * guest. Features from getauxval(AT_HWCAP/AT_HWCAP2) in the kernel's bit order (arch/arm64/kernel/cpuinfo.c),
 * implementer/variant/part/revision from MIDR_EL1 (readable when HWCAP_CPUID says the kernel traps it). */
#include <asm/hwcap.h>
#include <stdio.h>
#include <sys/auxv.h>

static const char *const hwcap[] = {
    "fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics", "fphp", "asimdhp", "cpuid",
    "asimdrdm", "jscvt", "fcma", "lrcpc", "dcpop", "sha3", "sm3", "sm4", "asimddp", "sha512", "sve", "asimdfhm",
    "dit", "uscat", "ilrcpc", "flagm", "ssbs", "sb", "paca", "pacg"};
static const char *const hwcap2[] = {
    "dcpodp", "sve2", "sveaes", "svepmull", "svebitperm", "svesha3", "svesm4", "flagm2", "frint", "svei8mm",
    "svef32mm", "svef64mm", "svebf16", "i8mm", "bf16", "dgh", "rng", "bti", "mte"};

int main(void) {
    unsigned long a = getauxval(AT_HWCAP), b = getauxval(AT_HWCAP2), midr = 0;
    if (a & HWCAP_CPUID) __asm__ volatile("mrs %0, MIDR_EL1" : "=r"(midr));
    printf("processor\t: 0\nBogoMIPS\t: 100.00\nFeatures\t:");
    for (unsigned i = 0; i < sizeof hwcap / sizeof *hwcap; i++)
        if (a & (1UL << i)) printf(" %s", hwcap[i]);
    for (unsigned i = 0; i < sizeof hwcap2 / sizeof *hwcap2; i++)
        if (b & (1UL << i)) printf(" %s", hwcap2[i]);
    printf("\nCPU implementer\t: 0x%02lx\nCPU architecture: 8\nCPU variant\t: 0x%lx\nCPU part\t: 0x%03lx\n"
           "CPU revision\t: %lu\n\n",
           (midr >> 24) & 0xff, (midr >> 20) & 0xf, (midr >> 4) & 0xfff, midr & 0xf);
    return 0;
}
