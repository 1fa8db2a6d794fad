# Platforms: `elaborate "x86_64-linux"` parses the system string into the large platform set
# that nixpkgs' stdenv carries (cpu, kernel, abi, predicates), once per bootstrap stage.
lib:
let
  inherit (lib) elem head last splitString toUpper;
  cpus = {
    x86_64 = { bits = 64; significantByte = "littleEndian"; family = "x86"; arch = "x86-64"; };
    i686 = { bits = 32; significantByte = "littleEndian"; family = "x86"; arch = "i686"; };
    aarch64 = { bits = 64; significantByte = "littleEndian"; family = "arm"; arch = "armv8-a"; };
    riscv64 = { bits = 64; significantByte = "littleEndian"; family = "riscv"; arch = "rv64gc"; };
  };
  kernels = {
    linux = { execFormat = "elf"; families = { }; name = "linux"; };
    darwin = { execFormat = "macho"; families = { bsd = true; }; name = "darwin"; };
  };
  abis = {
    gnu = { name = "gnu"; float = "hard"; libc = "glibc"; };
    musl = { name = "musl"; float = "hard"; libc = "musl"; };
  };
in
{
  elaborate = { system, abi ? "gnu", isStatic ? false }:
    let
      parts = splitString "-" system;
      cpuName = head parts;
      kernelName = last parts;
      cpu = cpus.${cpuName} // { name = cpuName; };
      kernel = kernels.${kernelName};
      abiSet = abis.${abi};
      config = "${cpuName}-unknown-${kernelName}-${abi}";
    in
    rec {
      inherit system config isStatic;
      parsed = { inherit cpu kernel; abi = abiSet; vendor = { name = "unknown"; }; };
      libc = if isStatic then "musl" else abiSet.libc;
      linker = "bfd";
      isLinux = kernelName == "linux";
      isDarwin = kernelName == "darwin";
      isx86_64 = cpuName == "x86_64";
      isi686 = cpuName == "i686";
      isx86 = cpu.family == "x86";
      isAarch64 = cpuName == "aarch64";
      is64bit = cpu.bits == 64;
      isMusl = libc == "musl";
      useLLVM = false;
      extensions = {
        sharedLibrary = if isStatic then ".a" else if isDarwin then ".dylib" else ".so";
        executable = "";
        staticLibrary = ".a";
      };
      uname = { system = if isLinux then "Linux" else "Darwin"; processor = cpuName; release = null; };
      qemuArch = if isx86_64 then "x86_64" else if isi686 then "i386" else cpuName;
      linuxArch = if isx86 then (if is64bit then "x86_64" else "i386") else if isAarch64 then "arm64" else cpuName;
      emulatorAvailable = _: true;
      gcc = { arch = cpu.arch; tune = "generic"; };
      rustc = { config = "${cpuName}-unknown-${kernelName}-${abi}"; };
      darwinSdkVersion = "11.3";
      # the env variables a compiler wrapper sets for this platform
      suffixSalt = lib.replaceStrings [ "-" "." ] [ "_" "_" ] config;
      envPrefix = toUpper suffixSalt;
      canExecute = other: other.parsed.cpu.family == cpu.family && elem other.parsed.kernel.name [ kernelName ];
    };
}
