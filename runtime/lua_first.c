/*
** lua_first.c — linked into pfp-run first, right before liblua5.4.a, so
** that Lua's code always lands at the same place, whatever the size of
** pfp's own code.
**
** Lua's virtual machine is one big function whose speed on a tight loop
** moves by 10-25% with where it lands relative to 64-byte boundaries (the
** CPU's instruction fetch and branch prediction work in such blocks).
** Linked after pfp's code, as before, it moved whenever pfp's code grew or
** shrank, and with it the speed of every CPU-bound function: a benchmark
** of the same Lua code went from within 2% of a plain interpreter to 15%
** slower with an unrelated change.  Linked first, after this block, it
** stays put.  The 32 bytes were chosen by measurement on the benchmark
** machine (x86-64, AMD EPYC), where they put luaV_execute 48 bytes past a
** 64-byte boundary: the fastest of the four places, by about 20%.  Other
** CPUs may prefer another; the point is that the place no longer drifts.
*/
__asm__(".text\n"
        ".balign 64\n"
        ".skip 32\n");
