# Embeds examples/bank/schema.sql into the binary so `walfold setup --schema` works anywhere.
file(READ "${SRC}" body)
file(WRITE "${OUT}.tmp" "// Generated from examples/bank/schema.sql. Do not edit.\n#include \"projections/bank/schema.h\"\nconst char* walfold::projections::bank::schema_sql() { return R\"WFSQL(${body})WFSQL\"; }\n")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.tmp" "${OUT}")
