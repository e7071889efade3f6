/*
** embed_example.c — pfp embedded in a C program.
**
** Build against an installed pfp:
**   cc embed_example.c $(pkg-config --cflags --libs pfp) -o embed_example
**   ./embed_example counters.lua
*/
#include <stdio.h>

#include <pfp.h>

int main(int argc, char **argv) {
  const char *script = argc > 1 ? argv[1] : "scripts/counters.lua";
  pfp_processor *p = pfp_processor_create();
  if (p == NULL) {
    fprintf(stderr, "%s\n", pfp_errmsg(NULL));
    return 1;
  }
  if (pfp_load_file(p, script) != PFP_OK ||
      pfp_set_context_json(p, "{\"counter1\": [0, 9, 8, 7, 6, 5],"
                              " \"counter2\": [2, 4, 6, 8]}") != PFP_OK ||
      pfp_register(p, "counter1", "{\"Operation\": \"ADD\"}") != PFP_OK ||
      pfp_register(p, "counter1", "{\"Operation\": \"MULTIPLY\"}") != PFP_OK ||
      pfp_register(p, "counter2", "{\"Operation\": \"ADD\"}") != PFP_OK ||
      pfp_register(p, "counter2", "{\"Operation\": \"MULTIPLY\"}") != PFP_OK) {
    fprintf(stderr, "embed_example: %s\n", pfp_errmsg(p));
    pfp_processor_destroy(p);
    return 2;
  }
  int not_ok = pfp_execute(p);
  if (not_ok < 0) {
    fprintf(stderr, "embed_example: %s\n", pfp_errmsg(p));
    pfp_processor_destroy(p);
    return 1;
  }
  for (size_t i = 0; i < pfp_record_count(p); i++) {
    const pfp_record *r = pfp_record_at(p, i);
    const json_t *result = pfp_record_result(r); /* borrowed from r */
    printf("%-9s %-7s", pfp_record_function_name(r),
           pfp_status_name(pfp_record_status(r)));
    if (pfp_record_status(r) == PFP_STATUS_OK)
      printf(" Operation=%s Count=%lld Answer=%lld\n",
             json_string_value(json_object_get(result, "Operation")),
             (long long)json_integer_value(json_object_get(result, "Count")),
             (long long)json_integer_value(json_object_get(result, "Answer")));
    else
      printf(" %s\n", pfp_record_error(r));
  }
  pfp_processor_destroy(p);
  return not_ok == 0 ? 0 : 1;
}
