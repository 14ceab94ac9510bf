// Bulk testbench around bitvert_unit (simulation only, driven by rtl_tb_pe.py).
//
// Loads up to N_MAX passes from hex files named by plusargs, offers them to the unit back
// to back (a pass is offered again until the unit takes it), and writes every output y
// and the cycles each pass took (from the edge that loaded it to the edge of its last
// step) to hex files; then raises `finished`. The files: +COLS=, +ACTS=, +CTRL= (per pass
// {zero_point, has_meta, meta[7:0], ncols}), +COUNT=<passes>, +Y=, +CYCLES=.
module tb_bitvert_feeder #(
    parameter int W = 16,
    parameter int SG = 8,
    parameter int WBITS = 8,
    parameter int ABITS = 8,
    parameter int ACCBITS = 24,
    parameter int CDIGIT = 3,
    parameter int WINDOWED = 1,
    parameter int N_MAX = 1 << 18
) (
    input  logic clk,
    input  logic rst_n,
    output logic finished
);
    localparam int NCW = $clog2(WBITS + 1);
    localparam int CTLW = NCW + 10;

    logic [WBITS*W-1:0] m_cols [N_MAX];
    logic [W*ABITS-1:0] m_acts [N_MAX];
    logic [CTLW-1:0]    m_ctrl [N_MAX];
    logic [ACCBITS-1:0] r_y [N_MAX];
    logic [31:0]        r_cycles [N_MAX];
    logic [31:0]        t_load [N_MAX];

    string f_cols, f_acts, f_ctrl, f_y, f_cycles;
    int n;
    initial begin
        if (!$value$plusargs("COLS=%s", f_cols) || !$value$plusargs("ACTS=%s", f_acts) ||
            !$value$plusargs("CTRL=%s", f_ctrl) || !$value$plusargs("Y=%s", f_y) ||
            !$value$plusargs("CYCLES=%s", f_cycles) || !$value$plusargs("COUNT=%d", n)) begin
            $display("tb_bitvert_feeder: missing plusargs");
            $finish;
        end
        $readmemh(f_cols, m_cols, 0, n - 1);
        $readmemh(f_acts, m_acts, 0, n - 1);
        $readmemh(f_ctrl, m_ctrl, 0, n - 1);
    end

    logic start, ready, done;
    logic signed [ACCBITS-1:0] y;
    int sent, got;
    logic [31:0] cyc;
    logic [CTLW-1:0] ctl;

    assign start = rst_n && sent < n;
    assign ctl = m_ctrl[sent < n ? sent : 0];

    bitvert_unit #(.W(W), .SG(SG), .WBITS(WBITS), .ABITS(ABITS), .ACCBITS(ACCBITS), .CDIGIT(CDIGIT),
                   .WINDOWED(WINDOWED)) dut (
        .clk, .rst_n, .start, .cols(m_cols[sent < n ? sent : 0]), .ncols(ctl[NCW-1:0]),
        .meta(ctl[NCW +: 8]), .has_meta(ctl[NCW+8]), .zero_point(ctl[NCW+9]),
        .acts_in(m_acts[sent < n ? sent : 0]), .ready, .done, .y);

    always_ff @(posedge clk or negedge rst_n) begin
        if (!rst_n) begin
            sent <= 0;
            got <= 0;
            cyc <= '0;
            finished <= 1'b0;
        end else begin
            cyc <= cyc + 1;
            if (start && ready) begin
                t_load[sent] <= cyc;
                sent <= sent + 1;
            end
            if (done) begin  // the last step of pass `got` was on the previous edge
                r_y[got] <= y;
                r_cycles[got] <= cyc - 1 - t_load[got];
                got <= got + 1;
            end
            if (got == n && !finished) begin
                $writememh(f_y, r_y, 0, n - 1);
                $writememh(f_cycles, r_cycles, 0, n - 1);
                finished <= 1'b1;
            end
        end
    end
endmodule
