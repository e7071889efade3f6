/* placeholder replaced below */
#include <stdio.h>
int main(void) { puts("ok 1 - placeholder"); return 0; }
