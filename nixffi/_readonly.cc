/* Nix's read-only mode, which the 2.26 C API does not expose: with it on, `derivationStrict`
 * computes drvPaths and output paths without writing .drv files or copying sources to the
 * store (what `nix-instantiate --eval` and nix-eval-jobs --no-instantiate do). It is a plain
 * member of the global nix::Settings, so this one function needs Nix's C++ headers; the build
 * leaves it out when they are not installed (nixffi.has_function tells). */
#if __has_include(<nix/store/globals.hh>)
#  include <nix/store/globals.hh>
#else
#  include <config-store.hh>
#  include <globals.hh>
#endif

extern "C" void evix_set_read_only_mode(int on) { nix::settings.readOnlyMode = on != 0; }
