/* sq__coro_switch(void **save_sp, void *new_sp): save the System V callee-saved registers
 * on the current stack, store the stack pointer in *save_sp, load new_sp, restore the
 * registers saved there and return into that context.
 * sq__coro_boot: first "return" of a new coroutine; r12 holds the sq_coro pointer. */
    .section .text.hot.squall,"ax",@progbits
    .globl  sq__coro_switch
    .hidden sq__coro_switch
    .type   sq__coro_switch, @function
sq__coro_switch:
    .cfi_startproc
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .cfi_endproc
    .size   sq__coro_switch, .-sq__coro_switch

    .globl  sq__coro_boot
    .hidden sq__coro_boot
    .type   sq__coro_boot, @function
sq__coro_boot:
    .cfi_startproc
    .cfi_undefined rip
    movq    %r12, %rdi
    call    sq__coro_main
    ud2
    .cfi_endproc
    .size   sq__coro_boot, .-sq__coro_boot

    .section .note.GNU-stack,"",@progbits
