# The source tree's habits (tests/tree/check_tree.sh): formatted, every exit through ts_fatal or
# ts_exit, the environment read only through base/env.h, no include reaching up a layer, no
# architecture's own symbols outside models/ (the runtime goes through models/model.h).
foreach(check format exits getenv layers models)
  add_test(NAME tree_${check} COMMAND ${CMAKE_SOURCE_DIR}/tests/tree/check_tree.sh
                                      ${CMAKE_SOURCE_DIR} ${check})
  set_tests_properties(tree_${check} PROPERTIES LABELS unit SKIP_RETURN_CODE 77 TIMEOUT 120)
endforeach()
