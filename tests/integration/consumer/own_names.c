/* A program's own functions that happen to bear names the shim uses inside: linked
 * with the static archive, they must not collide with the shim's (consumer.sh). */
int check_on(void);
int check_pointer(void);
int profile_start(void);
int stats_start(void);
int allocshim_say(void);
int be_owns(void);

int check_on(void) { return 1; }
int check_pointer(void) { return 2; }
int profile_start(void) { return 3; }
int stats_start(void) { return 4; }
int allocshim_say(void) { return 5; }
int be_owns(void) { return 6; }
