// One BitVert PE with the parts it shares in the array (BBS.md §9): the row control and
// schedulers (one per PE row, shared by the row's PEs) and the activation-sum generator
// (one per PE column). This is the unit the testbench drives: offer a pass (the stored
// columns of W weights with their metadata, and W activations); y is the dot product.
module bitvert_unit #(
    parameter int W = 16,
    parameter int SG = 8,
    parameter int WBITS = 8,
    parameter int ABITS = 8,
    parameter int ACCBITS = 24,
    parameter int CDIGIT = 3,
    parameter int WINDOWED = 1,
    localparam int NSUB = W / SG,
    localparam int LANES = SG / 2,
    localparam int WIN = WINDOWED != 0 ? LANES + 1 : SG,
    localparam int SELW = $clog2(WIN),
    localparam int SUMW = ABITS + $clog2(SG),
    localparam int NCW = $clog2(WBITS + 1),
    localparam int SHW = $clog2(WBITS),
    localparam int DIGW = CDIGIT + 1,
    localparam int DSHW = $clog2(6)
) (
    input  logic                 clk,
    input  logic                 rst_n,
    input  logic                 start,
    input  logic [WBITS*W-1:0]   cols,
    input  logic [NCW-1:0]       ncols,
    input  logic [7:0]           meta,
    input  logic                 has_meta,
    input  logic                 zero_point,
    input  logic [W*ABITS-1:0]   acts_in,
    output logic                 ready,
    output logic                 done,
    output logic signed [ACCBITS-1:0] y
);
    logic load, step, first, last, col_en, col_msb;
    logic [W-1:0] column;
    logic [SHW-1:0] col_shift;
    logic signed [DIGW-1:0] digit;
    logic [DSHW-1:0] digit_shift;
    logic [W*ABITS-1:0] acts;
    logic [NSUB*SUMW-1:0] sum_sub;
    logic [NSUB-1:0] invert;
    logic [NSUB*LANES*SELW-1:0] sel;
    logic [NSUB*LANES-1:0] valid;

    bv_control #(.W(W), .WBITS(WBITS), .CDIGIT(CDIGIT)) u_ctrl (
        .clk, .rst_n, .start, .cols, .ncols, .meta, .has_meta, .zero_point, .ready, .load, .column,
        .step, .first, .last, .col_en, .col_msb, .col_shift, .digit, .digit_shift, .done);

    for (genvar u = 0; u < NSUB; u++) begin : g_sched
        bv_scheduler #(.SG(SG), .WINDOWED(WINDOWED)) u_sched (
            .column(column[u*SG +: SG]), .invert(invert[u]),
            .sel(sel[u*LANES*SELW +: LANES*SELW]), .valid(valid[u*LANES +: LANES]));
    end

    bv_sum_gen #(.W(W), .SG(SG), .ABITS(ABITS)) u_sum (.acts, .sum_sub);

    bitvert_pe #(.W(W), .SG(SG), .WBITS(WBITS), .ABITS(ABITS), .ACCBITS(ACCBITS), .CDIGIT(CDIGIT),
                 .WINDOWED(WINDOWED)) u_pe (
        .clk, .load_acts(load), .acts_in, .acts, .sum_sub, .invert, .sel, .valid, .step, .first, .last,
        .col_en, .col_msb, .col_shift, .digit, .digit_shift, .y);
endmodule
